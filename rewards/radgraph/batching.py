"""Batched RadGraph inference: many reports per DyGIE++ forward, with the annotations of one-at-a-time runs.

`radgraph.RadGraph.forward` feeds the model one report at a time, because `DyGIE.forward` refuses
multi-document minibatches. Each report is a one-sentence document (`preprocess_reports` puts all of
its tokens in one sentence), and with RadGraph's configuration (coreference and event heads off) every
step after the encoder works per sentence: the span extractor, the NER scorer, the relation pruner (it
keeps ceil(words x spans_per_word) spans of each sentence) and the relation scorer. So here the
reports of a batch are padded into one tensor batch and run through the encoder, span extractor, NER
head and pruner together; the relation pairs are then scored per report on its own kept spans, exactly
as the single-report forward shapes them; and the outputs go through the package's own postprocessing.

Why the package's relation step is not called on the padded batch as is: after pruning, a report with
fewer kept spans than the longest one in the batch gets padding rows, and the package's
`RelationExtractor._predict_sentence` masks only the columns of those rows, so it would emit extra
relations from the padding span. With one report per forward there is never such padding.

This calls radgraph 0.1.18's DyGIE++ submodules and their private helpers directly; a radgraph upgrade
must re-run tests/rewards/model_based/test_radgraph_batching.py, which compares with the package's forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class _Sentences(list):
    """The single sentence of each document in a batch, with the dataset name the DyGIE++ heads read.

    The NER head reads `.dataset` and iterates sentences, so this stands in for the one document the
    package's forward passes it.
    """

    def __init__(self, documents: Sequence[Any]) -> None:
        super().__init__(document.sentences[0] for document in documents)
        self.dataset = documents[0].dataset


def supports_batching(dygie: Any) -> bool:
    """Whether a DyGIE++ model's outputs are per sentence, so batching reports leaves them unchanged.

    Coreference (and its span propagation) and event heads look across the document; RadGraph's models
    train with them off. A model that uses them is run one report at a time.
    """
    weights = dygie._loss_weights
    return (weights["ner"] > 0 and weights["relation"] > 0 and weights["coref"] == 0
            and dygie._coref.coref_prop == 0 and weights["events"] == 0)


def _forward(dygie: Any, tensors: dict[str, Any]) -> list[Any]:
    """Run one padded batch of one-sentence documents; return the documents with predictions set."""
    import torch
    from radgraph.allennlp.nn import util

    documents = tensors["metadata"]
    if any(len(document.sentences) != 1 for document in documents):
        raise ValueError("batched RadGraph inference expects one sentence per report (radgraph's "
                         "preprocess_reports output); this radgraph version splits reports differently")
    sentences = _Sentences(documents)
    text = tensors["text"]
    # (reports, 1 sentence, words, dim) -> (reports, words, dim): each report's sentence is one batch row.
    embeddings = dygie._embedder(text, num_wrapping_dims=1).squeeze(1)
    text_mask = util.get_text_field_mask(text, num_wrapping_dims=1).float().squeeze(1)
    sentence_lengths = text_mask.sum(dim=1).long()  # [reports]
    spans = tensors["spans"].squeeze(1)  # [reports, spans, 2]
    span_mask = (spans[:, :, 0] >= 0).float()  # padding spans are (-1, -1)
    spans = torch.nn.functional.relu(spans.float()).long()
    span_embeddings = dygie._endpoint_span_extractor(embeddings, spans)

    ner = dygie._ner(spans, span_mask, span_embeddings, sentence_lengths, None, sentences)["predictions"]

    relation = dygie._relation
    relation._active_namespace = f"{sentences.dataset}__relation_labels"
    (top_embeddings, top_scores, keep, _top_mask, _top_indices,
     top_spans) = relation._prune_spans(spans, span_mask, span_embeddings, sentence_lengths)
    keep, top_spans = keep.cpu(), top_spans.cpu()
    for row, (document, predictions) in enumerate(zip(documents, ner, strict=True)):
        kept = int(keep[row])
        # The first `kept` entries are this report's kept spans in span order; the rest is padding. Scoring
        # the pairs per report keeps memory at one report's kept spans squared, as in the package.
        pairs = relation._compute_span_pair_embeddings(top_embeddings[row:row + 1, :kept])
        scores = relation._compute_relation_scores(pairs, top_scores[row:row + 1, :kept])
        _, relations = relation._predict_sentence(top_spans[row, :kept], scores[0].cpu(), keep[row],
                                                  document.sentences[0])
        document.sentences[0].predicted_ner = predictions
        document.sentences[0].predicted_relations = relations
    return documents


def annotate_batched(radgraph_model: Any, reports: Sequence[str], batch_size: int) -> dict[str, dict[str, Any]]:
    """What `radgraph_model(reports)` returns (annotations keyed "0", "1", ...), `batch_size` reports per forward.

    `radgraph_model` is a loaded `radgraph.RadGraph`. Reports are grouped by length (in characters, which
    follows the encoder's wordpiece count) so a batch pads little.
    """
    import torch
    from radgraph.allennlp.data import Batch
    from radgraph.utils import batch_to_device, postprocess_reports, preprocess_reports

    if batch_size < 1:
        raise ValueError(f"RadGraph batch_size must be at least 1, got {batch_size}")
    dygie = radgraph_model.model
    if batch_size == 1 or not supports_batching(dygie):
        return radgraph_model(list(reports))
    texts = ["None" if not report else report for report in reports]  # as the package does
    documents = preprocess_reports(texts, radgraph_model.model_type)
    order = sorted(range(len(documents)), key=lambda index: len(" ".join(documents[index]["sentences"][0])))
    results = []
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            instances = [radgraph_model.reader.text_to_instance(documents[index])
                         for index in order[start:start + batch_size]]
            for instance in instances:
                instance.index_fields(dygie.vocab)
            batch = Batch(instances)
            tensors = batch_to_device(batch.as_tensor_dict(batch.get_padding_lengths()), radgraph_model.device)
            results.extend(document.to_json() for document in _forward(dygie, tensors))
    return postprocess_reports(results)
