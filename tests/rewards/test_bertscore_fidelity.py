"""BERTScore under transformers 5 encodes reports as bert-score does under transformers 4 (ReXrank's setup).

A tiny RoBERTa (byte-level BPE trained here on a few sentences, random weights) stands in for distilroberta-base:
the two fidelity points are about the tokenizer and the text handed to it, not the weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("bert_score")

SENTENCES = ["No acute effusion. Mild cardiomegaly.", "Seen: No pleural effusion", "heart size normal"] * 5


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    folder = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=64)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=72, pad_token_id=1)
    RobertaModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def plugin(tiny_roberta):
    from rewards.bertscore import BERTScore

    scorer = BERTScore(model=str(tiny_roberta), num_layers=2, rescale_with_baseline=False, device="cpu")
    scorer.setup()
    return scorer


def test_first_word_gets_the_prefix_space_token(plugin):
    from bert_score.utils import sent_encode

    tokenizer = plugin._scorer._tokenizer
    tokens = tokenizer.convert_ids_to_tokens(sent_encode(tokenizer, "No effusion"))
    # transformers 4.57.6 (slow RobertaTokenizer, add_prefix_space=True) gives these tokens for this vocabulary.
    assert tokens == ["<s>", "ĠNo", "Ġeffusion", "</s>"]
    # Leading/trailing whitespace is stripped by bert-score first, so the result does not change.
    assert sent_encode(tokenizer, "  No effusion ") == sent_encode(tokenizer, "No effusion")


def test_prefix_space_changes_the_score_as_upstream(plugin):
    # "No" at the start must embed like "No" in the middle of a report: the same token id either way.
    tokenizer = plugin._scorer._tokenizer
    from bert_score.utils import sent_encode

    start = sent_encode(tokenizer, "No effusion")[1]
    middle = sent_encode(tokenizer, "effusion No")[2]
    assert start == middle


def test_repeated_spaces_are_collapsed(plugin):
    text = "No acute effusion. Mild cardiomegaly."
    spaced = "No  acute   effusion.  Mild cardiomegaly."
    same, collapsed = plugin.score([text, spaced], [text, text])
    assert same == pytest.approx(1.0, abs=1e-6)
    # Without collapsing, each extra space is a "Ġ" token of its own and F1 drops below 1.
    assert collapsed == pytest.approx(1.0, abs=1e-6)
    tabbed = plugin.score(["No acute\teffusion. Mild cardiomegaly."], [text])[0]
    assert tabbed < 0.999  # only spaces are collapsed, as upstream's re.sub(r' +', ' ', ...)
