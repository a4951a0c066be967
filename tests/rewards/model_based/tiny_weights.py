"""Helpers for the model-based reward tests: tiny CheXbert weights in the published format, oracle paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

ORACLES = Path(__file__).resolve().parents[3].parent / "shared" / "oracles"

REPORTS = [
    "No pleural effusion or pneumothorax. Heart size is normal.",
    "Mild cardiomegaly with small bilateral pleural effusions and basilar atelectasis.",
    "Endotracheal tube terminates 2 cm above the carina. Bibasilar opacities likely atelectasis.",
    "Unchanged mild pulmonary edema. No radiographic evidence of pneumonia.",
    "The lungs are clear without focal consolidation.\n\n  The cardiac and mediastinal contours are normal.",
]

HIDDEN, LAYERS, INTERMEDIATE, MAX_POSITIONS = 32, 2, 64, 512


def oracle(relative: str) -> Path:
    """Path of a file under ../shared/oracles, or skip the test when the folder is absent."""
    path = ORACLES / relative
    if not path.exists():
        pytest.skip(f"reference values not present at {path} (they live in the project's shared/ folder, "
                    "beside the repository; a plain clone has none)")
    return path


def published_chexbert_keys(layers: int) -> list[str]:
    """Key names of the published chexbert.pth state dict (DataParallel-wrapped bert_labeler)."""
    keys = ["bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
            "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
            "bert.embeddings.LayerNorm.bias"]
    for i in range(layers):
        prefix = f"bert.encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                     "output.dense", "output.LayerNorm"):
            keys += [prefix + name + ".weight", prefix + name + ".bias"]
    keys += ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]
    for head in range(14):
        keys += [f"linear_heads.{head}.weight", f"linear_heads.{head}.bias"]
    return ["module." + key for key in keys]


def _shape(key: str, vocab: int) -> tuple[int, ...]:
    name = key.removeprefix("module.")
    if name.startswith("linear_heads."):
        classes = 2 if name.split(".")[1] == "13" else 4
        return (classes, HIDDEN) if name.endswith("weight") else (classes,)
    table = {"word_embeddings": (vocab, HIDDEN), "position_embeddings": (MAX_POSITIONS, HIDDEN),
             "token_type_embeddings": (2, HIDDEN)}
    for part, shape in table.items():
        if part in name:
            return shape
    if "LayerNorm" in name:
        return (HIDDEN,)
    if "intermediate.dense" in name:
        return (INTERMEDIATE, HIDDEN) if name.endswith("weight") else (INTERMEDIATE,)
    if ".output.dense" in name and "attention" not in name:
        return (HIDDEN, INTERMEDIATE) if name.endswith("weight") else (HIDDEN,)
    return (HIDDEN, HIDDEN) if name.endswith("weight") else (HIDDEN,)


def write_tiny_chexbert(folder: Path, vocab_size: int, seed: int = 0, position_ids: bool = False) -> Path:
    """Write a randomly initialised chexbert.pth with the published layout and key names."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key in published_chexbert_keys(LAYERS):
        shape = _shape(key, vocab_size)
        if "LayerNorm.weight" in key:
            state[key] = torch.ones(shape)
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.2
    if position_ids:  # what transformers 3.x also saved
        state["module.bert.embeddings.position_ids"] = torch.arange(MAX_POSITIONS).unsqueeze(0)
    # Training state saved beside the weights, as in the published file (plain tensors and numbers).
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                 "param_groups": [{"lr": 2e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                                   "params": [0]}]}
    path = folder / "chexbert.pth"
    torch.save({"epoch": 8, "model_state_dict": state, "optimizer_state_dict": optimizer}, path)
    return path


def write_tiny_bert_dir(folder: Path) -> Path:
    """A bert-base-uncased-like folder: a WordPiece vocab.txt trained here and a tiny config.json."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                                        "[MASK]"])
    tokenizer.train_from_iterator(REPORTS * 3, trainer)
    tokenizer.model.save(str(folder))
    vocab_size = len((folder / "vocab.txt").read_text().splitlines())
    config = BertConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                        num_attention_heads=2, intermediate_size=INTERMEDIATE,
                        max_position_embeddings=MAX_POSITIONS)
    config.to_json_file(str(folder / "config.json"))
    return folder


def write_tiny_radgraph(folder: Path, model_type: str = "radgraph") -> Path:
    """Write `<model_type>.tar.gz` laid out like the published archives: config.json, weights.th, vocabulary/.

    The DyGIE++ model is built by the radgraph package itself from a tiny config (a 1-layer BERT encoder
    saved next to it with a WordPiece vocabulary trained here) so weights.th has the package's key names.
    """
    import tarfile

    from dotmap import DotMap
    from radgraph.allennlp.data import Vocabulary
    from radgraph.allennlp.modules import text_field_embedders, token_embedders
    from radgraph.dygie.models import dygie
    from transformers import BertConfig, BertModel, BertTokenizer

    from rewards.radgraph.compat import patch_transformers_for_radgraph

    patch_transformers_for_radgraph()
    encoder = write_tiny_bert_dir(folder / "encoder")
    BertTokenizer(vocab=str(encoder / "vocab.txt")).save_pretrained(str(encoder))
    torch.manual_seed(0)
    BertModel(BertConfig.from_json_file(str(encoder / "config.json"))).save_pretrained(str(encoder))

    model_dir = folder / "unpacked"
    vocabulary = model_dir / "vocabulary"
    vocabulary.mkdir(parents=True)
    (vocabulary / "non_padded_namespaces.txt").write_text("*tags\n*labels\n")
    # The first (empty) line is the "no entity" / "no relation" label DyGIE++ expects at index 0.
    (vocabulary / f"{model_type}__ner_labels.txt").write_text("\nANAT-DP\nOBS-DP\nOBS-DA\nOBS-U\n")
    (vocabulary / f"{model_type}__relation_labels.txt").write_text("\nmodify\nlocated_at\nsuggestive_of\n")
    bert = {"type": "pretrained_transformer_mismatched", "model_name": str(encoder), "max_length": 512}
    config = {
        "dataset_reader": {"type": "dygie", "max_span_width": 4, "token_indexers": {"bert": bert}},
        "model": {
            "type": "dygie", "embedder": {"token_embedders": {"bert": bert}},
            "feature_size": 8, "max_span_width": 4, "target_task": "relation",
            "feedforward_params": {"num_layers": 1, "hidden_dims": 16, "dropout": 0.0},
            "initializer": {"regexes": []}, "module_initializer": {"regexes": []},
            "loss_weights": {"ner": 1.0, "relation": 1.0, "coref": 0.0, "events": 0.0},
            "modules": {"coref": {"spans_per_word": 0.3, "max_antecedents": 10, "coref_prop": 0},
                        "ner": {}, "relation": {"spans_per_word": 0.5},
                        "events": {"trigger_spans_per_word": 0.3, "argument_spans_per_word": 0.8,
                                   "loss_weights": {"trigger": 1.0, "arguments": 0.5}}},
        },
    }
    (model_dir / "config.json").write_text(json.dumps(config))
    embedder = text_field_embedders.BasicTextFieldEmbedder(
        {"bert": token_embedders.PretrainedTransformerMismatchedEmbedder(model_name=str(encoder), max_length=512)})
    arguments = DotMap(json.loads(json.dumps(config["model"])))
    for name in ("type", "embedder", "initializer", "module_initializer"):
        del arguments[name]
    model = dygie.DyGIE(vocab=Vocabulary.from_files(str(vocabulary)), embedder=embedder, **arguments)
    torch.save(model.state_dict(), model_dir / "weights.th")
    archive = folder / f"{model_type}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return archive
