"""The plugin machinery: registry look-ups, options errors, the TRL adapter, pickling, import hygiene,
BERTScore plumbing on a tiny local model, RadCliQ, the unirg_step1 preset, and property tests."""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards import build_reward_functions
from rewards.adapter import TRLReward
from rewards.api import RewardOutput, RewardPlugin
from rewards.registry import BUILTINS, ENTRY_POINT_GROUP, instantiate, resolve
from unirg.errors import RewardError

# Examples per property test; `make fuzz` raises it for a nightly-style run.
FUZZ_EXAMPLES = int(os.environ.get("UNIRG_FUZZ_EXAMPLES", "300"))

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "custom_reward.py"
ORACLES = ROOT.parent / "shared" / "oracles"
# Built-ins that need no model weights: each must build, score and pickle anywhere.
PURE = ("chexpert_f1", "consistency", "bleu2", "bleu4", "rouge_l", "format", "length", "repetition",
        "duplicate_rate")
TEXT_REWARDS = PURE


# --- registry ------------------------------------------------------------------------------------------

def test_lookup_by_builtin_name_and_dotted_path():
    from rewards.clinical import CheXpertF1
    from rewards.lexical import bleu2

    assert resolve("chexpert_f1") is CheXpertF1
    assert resolve("rewards.lexical:bleu2") is bleu2
    for name in PURE:
        assert resolve(name) is not None


def test_every_builtin_name_resolves():
    # Importing a plugin never needs its weights; only setup() does.
    for name in BUILTINS:
        assert resolve(name) is not None, name


def test_lookup_by_file_path_loads_the_example():
    plugin = resolve(f"{EXAMPLE}:mentions_heart")
    assert plugin(["Heart size is normal.", "Lungs clear.", " "]) == [1.0, 0.0, None]
    functions, _ = build_reward_functions([{"name": f"{EXAMPLE}:mentions_heart", "weight": 0.1}])
    assert functions[0].__name__ == "mentions_heart"
    assert functions[0](["Findings: the heart is enlarged."], reference=["x"]) == [1.0]


def test_lookup_by_entry_point(tmp_path, monkeypatch):
    package = tmp_path / "my_rewards"
    package.mkdir()
    (package / "__init__.py").write_text(EXAMPLE.read_text())
    dist = tmp_path / "my_rewards-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-rewards\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nheart = my_rewards:mentions_heart\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = resolve("heart")
    assert plugin(["Cardiac silhouette normal."]) == [1.0]
    from rewards import list_plugins

    assert any(info.name == "heart" and "my-rewards" in info.origin for info in list_plugins())
    functions, weights = build_reward_functions([{"name": "heart", "weight": 2.0}])
    assert weights == [2.0] and functions[0](["Findings: no heart."], reference=[""]) == [1.0]


def test_unknown_names_suggest_the_closest():
    with pytest.raises(RewardError, match="did you mean 'rouge_l'"):
        resolve("rogue_l")
    with pytest.raises(RewardError, match="did you mean 'chexpert_f1'"):
        resolve("chexpert-f1")
    with pytest.raises(RewardError, match="file not found"):
        resolve("no/such/file.py:thing")
    with pytest.raises(RewardError, match="defines no 'nothing'"):
        resolve(f"{EXAMPLE}:nothing")
    with pytest.raises(RewardError, match="cannot import"):
        resolve("no_such_package.mod:obj")


def test_options_errors():
    with pytest.raises(RewardError, match="bad options"):
        instantiate("length", {"lo": 0.5})
    with pytest.raises(RewardError, match="takes no options"):
        instantiate("bleu2", {"n": 2})
    with pytest.raises(ValueError, match="14 or 5"):
        instantiate("chexpert_f1", {"labels": 3})
    assert instantiate("length", {"low": 0.2, "high": 3.0}).high == 3.0


# --- adapter -------------------------------------------------------------------------------------------

class _Recorder:
    def __init__(self):
        self.metrics: dict[str, float] = {}

    def __call__(self, key: str, value: float) -> None:
        self.metrics[key] = value


def test_adapter_string_and_conversational_completions():
    reward = TRLReward(resolve("bleu2"), "bleu2")
    text = "Findings: mild cardiomegaly. Impression: no acute process."
    conversational = [[{"role": "assistant", "content": text}],
                      [{"role": "assistant", "content": [{"type": "text", "text": text}]}]]
    references = ["mild cardiomegaly. no acute process."] * 2
    assert reward([text, text], reference=references) == reward(conversational, reference=references)
    assert reward([text], reference=references[:1])[0] == pytest.approx(1.0)


def test_adapter_passes_dataset_columns_by_name():
    def wants_column(reports, study_id):
        return [float(len(s)) / 10 for s in study_id]

    reward = TRLReward(wants_column, "col")
    reward.low, reward.high = 0.0, 1.0
    assert reward(["a", "b"], study_id=["s1", "s22"], trainer_state=None) == [0.2, 0.3]
    missing = TRLReward(wants_column, "col", max_consecutive_failures=99)
    with pytest.raises(TypeError, match="study_id"):
        missing(["a"], reference=["x"])


def test_adapter_faults_become_none():
    class Bad(RewardPlugin):
        name = "bad"

        def __init__(self, values):
            self.values = values

        def score(self, reports):
            return self.values

    wrong_count = TRLReward(Bad([0.5]), "bad", max_consecutive_failures=5)
    assert wrong_count(["a", "b"]) == [None, None]
    assert wrong_count.faults == 2
    odd = TRLReward(Bad([math.nan, math.inf, 1.5, -0.1, "x", None, 0.25]), "bad")
    assert odd(["a"] * 7) == [None, None, None, None, None, None, 0.25]
    assert odd.faults == 5  # None is "not scorable", not a fault
    crashing = TRLReward(Bad(None), "bad", max_consecutive_failures=2)
    assert crashing(["a"]) == [None]
    with pytest.raises(RewardError, match="2 calls in a row"):
        crashing(["a"])


def test_adapter_logs_seconds_faults_and_parts():
    class WithParts(RewardPlugin):
        name = "parts"

        def score(self, reports):
            return RewardOutput([1.0] * len(reports), {"half": [0.5] * len(reports), "gap": [None, 1.0]})

    recorder = _Recorder()
    reward = TRLReward(WithParts(), "parts")
    assert reward(["a", "b"], log_metric=recorder) == [1.0, 1.0]
    assert recorder.metrics["rewards/parts/half"] == 0.5
    assert recorder.metrics["rewards/parts/gap"] == 1.0
    assert recorder.metrics["rewards/parts/faults"] == 0.0
    assert recorder.metrics["rewards/parts/seconds"] >= 0.0


def test_every_pure_builtin_pickles_and_scores_after_unpickling():
    functions, _ = build_reward_functions([{"name": name} for name in PURE])
    completions = ["<think>Right effusion.</think>Findings: right pleural effusion. Impression: effusion."]
    columns = {"reference": ["Right pleural effusion."], "sections": ["findings_impression"]}
    for function in functions:
        before = function(completions, **columns)
        clone = pickle.loads(pickle.dumps(function))
        assert clone.__name__ == function.__name__
        assert clone(completions, **columns) == before


def test_rewards_import_without_torch():
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import rewards, rewards.clinical, rewards.lexical, rewards.format, rewards.radcliq, rewards.bertscore
        from rewards import build_reward_functions
        build_reward_functions([{{"name": n}} for n in {list(PURE)!r}])
        from rewards.registry import resolve
        resolve("bertscore"); resolve("neg_radcliq")
        bad = sorted(m for m in ("torch", "transformers", "bert_score") if m in sys.modules)
        print("LOADED", bad)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout


# --- examples/custom_reward.py -------------------------------------------------------------------------

def test_example_plugin_through_the_adapter():
    functions, weights = build_reward_functions([{"name": f"{EXAMPLE}:mentions_heart", "weight": 0.5}])
    assert weights == [0.5]
    assert functions[0](["Findings: heart size normal.", "", "Findings: clear."], reference=["a"] * 3) \
        == [1.0, None, 0.0]


# --- RadCliQ and the UniRG step-1 preset ---------------------------------------------------------------

def test_radcliq_constants():
    from rewards.radcliq import NegativeRadCliQ, radcliq_v0, radcliq_v1

    # analytic values of the published models (../shared/oracles/radcliq); own fixture, no ../shared needed
    assert radcliq_v1(1.0, 1.0, 1.0, 1.0) == pytest.approx(-1.4406902828047017, abs=1e-12)
    assert radcliq_v0(1.0, 1.0, 1.0, 1.0) == pytest.approx(-0.24213342294409346, abs=1e-12)
    assert radcliq_v1(0.0, 0.0, 0.0, 0.0) == pytest.approx(2.4501430833271307, abs=1e-12)
    assert radcliq_v0(0.0, 0.0, 0.0, 0.0) == pytest.approx(5.516160804054495, abs=1e-12)
    reward = NegativeRadCliQ()
    assert reward.score([1.0, None], [1.0, 0.5], [1.0, 0.5], [1.0, 0.5]) == [pytest.approx(1.4406902828047017),
                                                                                None]
    assert NegativeRadCliQ(version=0).score([1.0], [1.0], [1.0], [1.0]) == [pytest.approx(0.24213342294409346)]
    with pytest.raises(ValueError, match="1 or 0"):
        NegativeRadCliQ(version=2)
    functions, _ = build_reward_functions([{"name": "neg_radcliq"}])
    clone = pickle.loads(pickle.dumps(functions[0]))
    columns = {"radgraph": [1.0, 0.0], "bertscore": [1.0, 0.0], "semb_score": [1.0, 0.0], "bleu2": [1.0, 0.0]}
    assert clone(["a", "b"], **columns) == [pytest.approx(1.4406902828047017), pytest.approx(-2.4501430833271307)]


def test_radcliq_matches_the_oracle_file():
    import json

    path = ORACLES / "radcliq" / "radcliq_params.json"
    if not path.exists():
        pytest.skip(f"{path}: ../shared/oracles not present (a user's clone has none)")
    from rewards import radcliq

    params = json.loads(path.read_text())
    for version, prefix in (("radcliq_v1", "V1"), ("radcliq_v0", "V0")):
        assert list(getattr(radcliq, f"{prefix}_MEAN")) == params[version]["mean"]
        assert list(getattr(radcliq, f"{prefix}_SCALE")) == params[version]["scale"]
        assert list(getattr(radcliq, f"{prefix}_COEF")) == params[version]["coef"]
        assert getattr(radcliq, f"{prefix}_INTERCEPT") == params[version]["intercept"]
    analytic = params["analytic_values"]
    assert radcliq.radcliq_v1(1, 1, 1, 1) == pytest.approx(analytic["v1_all_subscores_1.0"], abs=1e-12)
    assert radcliq.radcliq_v0(0, 0, 0, 0) == pytest.approx(analytic["v0_all_zero"], abs=1e-12)


def test_unirg_step1_preset():
    from rewards import expand_presets
    from rewards.radcliq import unirg_step1

    assert unirg_step1() == [{"name": "bleu2", "weight": 0.0}, {"name": "bertscore", "weight": 0.370},
                             {"name": "semb_score", "weight": 0.253}, {"name": "radgraph_f1", "weight": 0.377}]
    expanded = expand_presets([{"name": "unirg_step1", "weight": 2.0}, {"name": "rouge_l"}])
    assert [spec for _, spec in expanded] == ["bleu2", "bertscore", "semb_score", "radgraph_f1", "rouge_l"]
    assert [entry["weight"] for entry, _ in expanded[:4]] == pytest.approx([0.0, 0.74, 0.506, 0.754])


# --- BERTScore on a tiny local model -------------------------------------------------------------------

CORPUS = ["no pleural effusion or pneumothorax", "mild cardiomegaly with small bilateral effusions",
          "the lungs are clear", "endotracheal tube in place"] * 4
BASELINE = "LAYER,P,R,F\n0,0.5,0.5,0.5\n1,0.5,0.5,0.5\n2,0.5,0.5,0.5\n"


def _tiny_bert(folder: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", tokenizer.token_to_id("[SEP]")),
                                                         ("[CLS]", tokenizer.token_to_id("[CLS]")))
    BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=64).save_pretrained(folder)
    BertModel(BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)


def _tiny_roberta(folder: Path) -> None:
    """distilroberta-shaped (byte-level BPE): the branch of bert-score the ReXrank default takes."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(CORPUS, vocab_size=300, special_tokens=specials)
    tokenizer._tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=True)
    RobertaTokenizerFast(tokenizer_object=tokenizer._tokenizer, model_max_length=64, bos_token="<s>",
                         pad_token="<pad>", eos_token="</s>", unk_token="<unk>", mask_token="<mask>").save_pretrained(folder)
    RobertaModel(RobertaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=16, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=32, max_position_embeddings=70,
                               pad_token_id=1)).save_pretrained(folder)


@pytest.fixture(scope="module", params=["bert", "roberta"])
def tiny_model(request, tmp_path_factory) -> Path:
    """A 2-layer model with random weights and a tokenizer trained here: plumbing only, no download."""
    folder = tmp_path_factory.mktemp(f"tiny_{request.param}")
    (_tiny_bert if request.param == "bert" else _tiny_roberta)(folder)
    (folder / "baseline.tsv").write_text(BASELINE)
    return folder


def test_bertscore_on_a_tiny_local_model(tiny_model):
    options = {"model": str(tiny_model), "num_layers": 1, "baseline_path": str(tiny_model / "baseline.tsv"),
               "device": "cpu"}
    functions, _ = build_reward_functions([{"name": "bertscore", "options": options}])
    reward = functions[0]
    reports = ["Findings: no pleural effusion.", "Findings: mild cardiomegaly.", "", "Findings: ünïcödé 肺 " * 50]
    scores = reward(reports, reference=["no pleural effusion.", "the lungs are clear.", "clear", "clear"])
    assert scores[0] == pytest.approx(1.0, abs=1e-5)  # identical text: F1 1, rescaled stays 1
    assert scores[1] < 0.999 and scores[3] < 0.999  # different text is not scored as identical
    assert scores[2] == pytest.approx(-1.0)  # empty report: raw 0, rescaled (0 - 0.5) / 0.5
    assert all(s is not None and s <= 1.0 for s in scores)
    assert reward.faults == 0
    clone = pickle.loads(pickle.dumps(reward))  # ships without the model, reloads in setup()
    assert clone.plugin._scorer is None
    raw = instantiate("bertscore", {**options, "rescale_with_baseline": False, "baseline_path": None})
    assert all(0.0 <= s <= 1.0 for s in raw.score(reports[1:2], ["the lungs are clear."]))


def test_bertscore_without_a_model_says_what_to_get(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-home"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"), raising=False)
    plugin = instantiate("bertscore", {})
    with pytest.raises(RewardError, match="distilroberta-base.*download"):
        plugin.setup()
    with pytest.raises(RewardError, match="num_layers"):
        instantiate("bertscore", {"model": str(tmp_path)}).setup()
    with pytest.raises(RewardError, match="not found"):
        instantiate("bertscore", {"model": str(tmp_path / "missing")}).setup()


# --- properties: every text reward, any text ------------------------------------------------------------

TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(list("abcdefghij .,:;\n<>/") + ["<think>", "</think>", "Findings:", "Impression:",
                                                              "no ", "effusion", "cardiomegaly", "possible ",
                                                              "XXXX"]), max_size=120).map("".join),
    st.lists(st.sampled_from(["No", "pleural", "effusion", ".", "Findings:", "Impression:", "<think>",
                              "</think>", "cannot", "exclude", "pneumonia", "ü", "肺", "\n"]),
             max_size=80).map(" ".join),
)
_STACK = None


def _stack():
    global _STACK
    if _STACK is None:
        _STACK = build_reward_functions([{"name": name, "max_consecutive_failures": 10**9}
                                         for name in TEXT_REWARDS])[0]
    return _STACK


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completion=TEXT, reference=TEXT)
def test_text_rewards_never_raise_and_stay_in_range(completion, reference):
    for function in _stack():
        for value in function([completion, completion], reference=[reference, reference],
                              sections=["findings_impression", "findings"]):
            assert value is None or (math.isfinite(value) and function.low <= value <= function.high)
        assert function.faults == 0, function.__name__


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(text=TEXT)
def test_labeler_is_deterministic(text):
    from rewards.labeler import label_report
    from rewards.labeler.rules import label_report as uncached

    first = label_report(text)
    assert first == uncached.__wrapped__(text) == uncached.__wrapped__(text)
    assert len(first) == 14 and all(v in (1, 0, -1, None) for v in first)


def test_text_rewards_on_huge_garbage_and_non_ascii_completions():
    import time

    completions = [
        "Findings: " + "no pleural effusion, small right pneumothorax; " * 1_500 + "Impression: " + "stable " * 2_000,
        "\x00\x01\x02 <think><think></think></think> Findings:: Impression:: Findings:",
        "Befund: Épanchement pleural droit. 肺野清晰。 😀 Impression: ñ",
        "",
    ]
    started = time.perf_counter()
    for function in _stack():
        values = function(completions, reference=["Small right pneumothorax."] * 4, sections=["findings"] * 4)
        assert len(values) == 4
        assert all(v is None or function.low <= v <= function.high for v in values), function.__name__
        assert function.faults == 0, function.__name__
    assert time.perf_counter() - started < 10.0
