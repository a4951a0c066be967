"""`unirg traces`: teacher reasoning traces for reasoning SFT, kept only when they agree with the reference."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add the `traces` subcommand."""
    parser = subparsers.add_parser(
        "traces", help="Write Perception/Diagnosis/Reflection traces for SFT with a teacher VLM.",
        description="For each training study of the recipe, ask a teacher VLM (a local folder served by vLLM, "
                    "or a served OpenAI-compatible URL) to explain how the image supports the reference report, "
                    "walking the radiology checklist. A trace is kept only when the findings it asserts agree "
                    "with the reference's CheXpert labels; the others are counted by reason. Resumable: studies "
                    "already in the traces file (kept or dropped) are skipped. Reasoning SFT then reads the file "
                    "named by traces.path.")
    parser.add_argument("--recipe", default="demo", help="Recipe file or name under recipes/ (default: demo).")
    parser.add_argument("--out", default=None, help="Traces file to write (default: the recipe's traces.path).")
    teacher = parser.add_mutually_exclusive_group()
    teacher.add_argument("--teacher", default=None, help="Local teacher model folder to serve (traces.teacher).")
    teacher.add_argument("--teacher-url", default=None, help="Base URL (.../v1) of a served teacher "
                         "(traces.teacher_url).")
    parser.add_argument("--teacher-model", default=None, help="Model name to ask --teacher-url for.")
    parser.add_argument("--limit", type=int, default=None, help="Ask about at most this many studies this run.")
    parser.add_argument("--retry-dropped", action="store_true",
                        help="Ask again about studies whose trace an earlier run dropped.")
    parser.add_argument("--run-dir", default=None, help="Folder data is prepared in (default: the recipe's "
                        "output.dir).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Recipe overrides, as for `unirg rl`.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the training studies, start (or reach) the teacher, generate and print the counts."""
    from unirg.data import load_splits
    from unirg.reasoning.generate import generate_traces, summary_path
    from unirg.reasoning.knowledge import load_checklist
    from unirg.reasoning.teacher import TeacherClient, TeacherServer, api_key_from
    from unirg.reasoning.traces_file import TracesError, dropped_path
    from unirg.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    config = recipe.traces
    if args.teacher or args.teacher_url:
        config = config.model_copy(update={"teacher": args.teacher, "teacher_url": args.teacher_url})
    if args.teacher_model:
        config = config.model_copy(update={"teacher_model": args.teacher_model})
    out = args.out or config.resolved_path(recipe.name)
    if not out:
        raise TracesError("no traces file: pass --out or set traces.path in the recipe")
    if not (config.teacher or config.teacher_url):
        raise TracesError("no teacher: set traces.teacher (a local model folder to serve) or traces.teacher_url "
                          "(a served OpenAI-compatible endpoint), or pass --teacher / --teacher-url")
    if args.limit is not None and args.limit < 1:
        raise TracesError("--limit must be at least 1")
    checklist = load_checklist(config.checklist)
    api_key = None if config.teacher else api_key_from(config.api_key_env)
    server = None
    if config.teacher:  # its checks (a model folder, vLLM installed) before the data is read
        serve = config.serve
        server = TeacherServer(config.teacher, gpu_memory_utilization=serve.gpu_memory_utilization,
                               max_model_len=serve.max_model_len, python=serve.python, extra_args=serve.extra_args,
                               startup_timeout_s=serve.startup_timeout_s, env=serve.env)
    # The teacher writes for the reasoning format whatever the recipe's format: it sees the student's request.
    prompt = recipe.prompt.model_copy(update={"format": "reasoning"})
    splits = load_splits(recipe.data, prompt, Path(args.run_dir or recipe.run_dir()))
    try:
        if server is not None:
            print(f"starting vLLM for the teacher {config.teacher}", file=sys.stderr)
            base_url, model, api_key = server.start(), server.served_name, server.api_key
        else:
            base_url, model = config.teacher_url, config.teacher_model
        client = TeacherClient(base_url, model or "", api_key=api_key, timeout_s=config.request_timeout_s,
                               retries=config.retries, max_tokens=config.max_tokens,
                               temperature=config.temperature, request_options=config.request_options)
        if not model:
            served = client.served_models()
            if not served:
                raise TracesError(f"traces.teacher_url {base_url} lists no models; set traces.teacher_model")
            client.model = served[0]
        # What each trace records as its teacher: the served folder's name, or the model the URL serves.
        teacher_name = Path(config.teacher).name if config.teacher else client.model
        summary = generate_traces(splits.train, client, out, teacher_name, checklist,
                                  concurrency=config.concurrency, allow_omissions=config.allow_omissions,
                                  retry_dropped=args.retry_dropped, limit=args.limit,
                                  progress=not args.no_progress and recipe.logging.progress)
    finally:
        if server is not None:
            server.stop()
    for line in summary.lines():
        print(line)
    print(f"kept traces: {out}; dropped studies: {dropped_path(out)}; counts: {summary_path(out)}")
    return 0
