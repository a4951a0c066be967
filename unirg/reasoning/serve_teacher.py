"""`python -m unirg.reasoning.serve_teacher ARGS`: vLLM's OpenAI-compatible server, able to serve Qwen-VL without torchvision.

It takes the arguments of `python -m vllm.entrypoints.openai.api_server`. In the CPU install profile
(no torchvision) vLLM's Qwen2-VL/Qwen2.5-VL/Qwen3-VL code cannot import its image processor; the patch of
unirg.rollout.vllm_compat points it at the PIL one first (with torchvision installed it does nothing).
"""

from __future__ import annotations

import runpy

from unirg.rollout.vllm_compat import patch_qwen2_vl_without_torchvision

# At import, not in main(): vLLM starts its engine and worker processes with multiprocessing, and a spawned
# child re-imports this module (as __mp_main__) without running main(); the patch must reach it too.
patch_qwen2_vl_without_torchvision()


def main() -> None:
    # alter_sys=False keeps this module as __main__, the one spawned children re-import.
    runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=False)


if __name__ == "__main__":
    main()
