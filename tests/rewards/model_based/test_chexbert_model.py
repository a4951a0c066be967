"""CheXbert model code on CPU with tiny random weights in the published checkpoint format."""

from __future__ import annotations

import pytest
import torch
from tiny_weights import LAYERS, REPORTS, published_chexbert_keys, write_tiny_chexbert

from rewards.chexbert.model import CONDITIONS, CheXbert, clean_report, read_checkpoint
from rewards.chexbert.scores import semb_scores
from rewards.chexbert.weights import chexbert_files, require
from rewards.clinical import positives
from rewards.labeler import OBSERVATIONS
from unirg.errors import RewardError


@pytest.fixture(scope="module")
def chexbert(tiny_chexbert) -> CheXbert:
    return CheXbert(tiny_chexbert["checkpoint"], tiny_chexbert["bert_dir"], batch_size=2)


def test_checkpoint_keys_are_the_published_ones(tiny_chexbert):
    raw = torch.load(tiny_chexbert["checkpoint"], weights_only=True)
    assert set(raw) == {"epoch", "model_state_dict", "optimizer_state_dict"}
    assert list(raw["model_state_dict"]) == published_chexbert_keys(LAYERS)
    assert all(not key.startswith("module.") for key in read_checkpoint(tiny_chexbert["checkpoint"]))


def test_labels_have_the_chexpert_convention(chexbert):
    labels = chexbert.labels(REPORTS)
    assert len(labels) == len(REPORTS)
    for row in labels:
        assert len(row) == len(CONDITIONS)
        assert all(label in (1, 0, -1, None) for label in row[:13])
        assert row[13] in (1, None)  # No Finding has only blank and positive


def test_head_classes_map_to_labels(tiny_chexbert, tmp_path):
    # Biases that dominate force each head's class: blank, positive, negative, uncertain in turn.
    state = torch.load(tiny_chexbert["checkpoint"], weights_only=True)
    for head in range(14):
        classes = 2 if head == 13 else 4
        state["model_state_dict"][f"module.linear_heads.{head}.weight"].zero_()
        bias = torch.zeros(classes)
        bias[head % classes] = 10.0
        state["model_state_dict"][f"module.linear_heads.{head}.bias"] = bias
    torch.save(state, tmp_path / "chexbert.pth")
    labeler = CheXbert(tmp_path / "chexbert.pth", tiny_chexbert["bert_dir"])
    expected = [{0: None, 1: 1, 2: 0, 3: -1}[head % 4] for head in range(13)] + [{0: None, 1: 1}[13 % 2]]
    assert labeler.labels(["Small left effusion."]) == [expected]
    assert positives(expected) == [0, 1, 0, 1] * 3 + [0, 1]  # uncertain counts as positive


def test_batching_does_not_change_results(tiny_chexbert, chexbert):
    one_by_one = CheXbert(tiny_chexbert["checkpoint"], tiny_chexbert["bert_dir"], batch_size=1)
    embeddings, classes = chexbert.encode(REPORTS)
    single_embeddings, single_classes = one_by_one.encode(REPORTS)
    assert embeddings.shape == (len(REPORTS), 32)
    assert torch.equal(classes, single_classes)
    assert torch.allclose(embeddings, single_embeddings, atol=1e-5)


def test_long_reports_truncate_to_512_tokens(chexbert):
    long_report = " ".join(["effusion"] * 2000)
    embeddings, classes = chexbert.encode([long_report, ""])
    assert embeddings.shape[0] == 2 and classes.shape == (2, 14)
    # The reference: [CLS] + word pieces + [SEP], and past 512 the first 511 ids then [SEP].
    tokenizer = chexbert.tokenizer
    reference = [tokenizer.cls_token_id, *tokenizer.convert_tokens_to_ids(tokenizer.tokenize(long_report)),
                 tokenizer.sep_token_id]
    reference = reference[:511] + [tokenizer.sep_token_id]
    assert tokenizer(long_report, truncation=True, max_length=512)["input_ids"] == reference


def test_cleaning_matches_reference():
    assert clean_report("  Lungs clear.\n\nNo  effusion. \n") == "Lungs clear. No effusion."


def test_semb_score_is_cosine_of_cls(chexbert):
    embeddings = chexbert.embeddings(REPORTS[:2])
    same = semb_scores(embeddings, embeddings)
    assert same == pytest.approx([1.0, 1.0], abs=1e-5)
    cross = semb_scores(embeddings[:1], embeddings[1:2])[0]
    expected = torch.nn.functional.cosine_similarity(embeddings[0], embeddings[1], dim=0).item()
    assert cross == pytest.approx(expected, abs=1e-6)


def test_head_order_is_the_labelers_observation_order():
    # rewards.clinical aggregates by position: CheXbert's heads must line up with the labeler's columns.
    assert CONDITIONS == OBSERVATIONS


def test_position_ids_buffer_from_older_transformers_is_accepted(tiny_chexbert, tmp_path):
    vocab = len((tiny_chexbert["bert_dir"] / "vocab.txt").read_text().splitlines())
    path = write_tiny_chexbert(tmp_path, vocab, position_ids=True)
    CheXbert(path, tiny_chexbert["bert_dir"]).labels(["No effusion."])


def test_wrong_checkpoint_says_what_is_wrong(tiny_chexbert, tmp_path):
    torch.save({"model_state_dict": {"module.bert.pooler.dense.weight": torch.zeros(2, 2)}}, tmp_path / "x.pth")
    with pytest.raises(RewardError, match="does not fit the CheXbert architecture"):
        CheXbert(tmp_path / "x.pth", tiny_chexbert["bert_dir"])


def test_missing_checkpoint_names_the_file_and_how_to_get_it(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    files = chexbert_files()
    assert [f.present for f in files] == [False, False, False]
    with pytest.raises(RewardError) as error:
        require(files, "semb_score")
    message = str(error.value)
    assert "chexbert.pth" in message and "huggingface-cli download StanfordAIMI/RRG_scorers chexbert.pth" in message
    assert "config.json" in message and "vocab.txt" in message and "bert-base-uncased" in message


def test_files_are_found_in_the_hub_cache(tiny_chexbert, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub.constants

    cache = tmp_path / "hub"
    for repo, sources in (("StanfordAIMI/RRG_scorers", [tiny_chexbert["checkpoint"]]),
                          ("google-bert/bert-base-uncased", [tiny_chexbert["bert_dir"] / "config.json",
                                                             tiny_chexbert["bert_dir"] / "vocab.txt"])):
        repo_dir = cache / ("models--" + repo.replace("/", "--"))
        snapshot = repo_dir / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        (repo_dir / "refs").mkdir()
        (repo_dir / "refs" / "main").write_text("0" * 40)
        for source in sources:
            shutil.copy(source, snapshot / source.name)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    files = chexbert_files()
    assert all(f.present for f in files), [f.describe() for f in files]
    assert files[0].path.name == "chexbert.pth"
