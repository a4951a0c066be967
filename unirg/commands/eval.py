"""`unirg eval`: the ReXrank-style metric table for a checkpoint (generate, then score) or a predictions file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    """Add the `eval` subcommand."""
    parser = subparsers.add_parser(
        "eval", help="Score a checkpoint or a predictions file with the report-generation metrics.",
        description="Either --predictions P.jsonl (lines {study_id, prediction, reference}) or --recipe R "
                    "--checkpoint C (generates on the recipe's held-out split, then scores).")
    parser.add_argument("--predictions", type=Path, help="JSONL with study_id, prediction and reference.")
    parser.add_argument("--references", type=Path, help="Optional JSONL of study_id + reference (+ sections).")
    parser.add_argument("--recipe", help="Recipe whose held-out split is generated on.")
    parser.add_argument("--checkpoint", help="Model folder to generate with (default: the recipe's model).")
    parser.add_argument("--out", type=Path, default=Path("eval"), help="Folder for metrics.csv/json.")
    parser.add_argument("--model", help="Model folder or hub id (in the local cache) to generate with on --data; "
                        "predictions.jsonl goes to --out and a re-run resumes it.")
    parser.add_argument("--data", metavar="SOURCE:PATH",
                        help="Test set for --model, e.g. rexrank:/data/mimic-cxr_test.json or iu_xray:/data/iu_xray.")
    parser.add_argument("--split", default="test", help="Split of --data (default test; a ReXrank file is one split).")
    parser.add_argument("--max-studies", type=int, help="Generate for the first N studies of --data only.")
    parser.add_argument("--backend", choices=("auto", "vllm", "hf"), default="auto",
                        help="Generation with --model: vLLM when installed (auto), or HF generate.")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="Studies per generation call (and per flush of predictions.jsonl).")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="Generation length cap.")
    parser.add_argument("--mode", choices=("sections", "rexrank"), default="sections",
                        help="sections: headers stripped on both sides; rexrank: the leaderboard's protocol (raw "
                             "completion against 'Findings: … Impression: …', 1/mean RadCliQ-v1).")
    parser.add_argument("--nlg", action="store_true",
                        help="Add the pycocoevalcap-convention NLG table (BLEU-1..4, ROUGE-L, CIDEr, METEOR with "
                             "Java) of the findings setting to metrics.json, as report-generation papers print it.")
    parser.add_argument("--metric-option", action="append", default=[], metavar="PLUGIN.KEY=VALUE",
                        help="Option of a model metric, e.g. bertscore.model=/weights/distilroberta-base, "
                             "bertscore.num_layers=5, radgraph_f1.model_path=/weights/radgraph (repeatable). "
                             "The judge columns of the rexrank mode: green.model_path=FOLDER (a local judge model "
                             "served with vLLM) or green.base_url=URL green.model=NAME (an OpenAI-compatible "
                             "endpoint; the reports are sent to it), likewise chexprompt.*.")
    parser.add_argument("--leaderboard", type=Path,
                        help="Folder of ReXrank's published results CSVs (rexrank mode): prints where the result "
                             "would rank.")
    parser.add_argument("--test-set", default="mimiccxr",
                        help="Leaderboard test set name in the CSV file names: iu_xray, mimiccxr, chexpertplus, "
                             "gradienthealth (default mimiccxr).")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Recipe overrides.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score, print the table, write metrics.csv and metrics.json."""
    from unirg.evaluation.metrics import MetricModels

    options = parse_metric_options(args.metric_option)
    rexrank_only = sorted(set(options) & {"ratescore", "green", "chexprompt"})
    if rexrank_only and args.mode != "rexrank":
        from unirg.errors import UnirgError

        raise UnirgError(f"--metric-option {', '.join(rexrank_only)}.*: those columns are computed with "
                         "--mode rexrank only; add it")
    models = MetricModels(options)
    try:
        return _run(args, models)
    finally:
        models.close()  # stops the judge servers this evaluation started


def _run(args: argparse.Namespace, models) -> int:
    from unirg.errors import UnirgError
    from unirg.evaluation.metrics import print_tables, write_tables

    if args.model:
        settings = _generate_and_score(args, models)
    elif args.predictions:
        from unirg.evaluation.predictions import read_predictions

        rows = read_predictions(args.predictions, args.references)
        findings = [r.reference_findings if r.reference_findings is not None else _findings_of(r.reference)
                    for r in rows]
        impressions = [r.reference_impression if r.reference_impression is not None else _impression_of(r.reference)
                       for r in rows]
        settings = score_mode(args, [r.prediction for r in rows], findings, impressions, models)
        add_nlg(args, settings, [r.prediction for r in rows], findings)
    elif args.recipe:
        from unirg.evaluation.heldout import evaluate_checkpoint
        from unirg.recipe import load_recipe

        recipe = load_recipe(args.recipe, args.overrides)
        settings = evaluate_checkpoint(recipe, args.checkpoint, args.out)
    else:
        raise UnirgError("give --model M --data SOURCE:PATH, --predictions FILE.jsonl, or --recipe R "
                         "(with --checkpoint C)")
    if args.leaderboard is not None and args.mode == "rexrank":
        from unirg.evaluation.rexrank import add_leaderboard_places

        add_leaderboard_places(settings, args.leaderboard, args.test_set)
        for name, table in settings.items():
            place = table.get("leaderboard_place")
            if place:
                print(f"{name}: 1/RadCliQ-v1 {table['one_over_radcliq_v1']:.3f} would rank {place['place']} of "
                      f"{place['of']} on ReXrank {args.test_set}")
    for name, reason in models.unavailable.items():
        print(f"{name}: not computed ({reason})")
    write_tables(settings, args.out)
    print_tables(settings)
    print(f"metrics written to {args.out / 'metrics.csv'} and {args.out / 'metrics.json'}")
    return 0


def _generate_and_score(args: argparse.Namespace, models) -> dict:
    """Write (or finish) predictions.jsonl for --data with --model, then score it."""
    import json
    import time

    from unirg.errors import UnirgError
    from unirg.evaluation.generate import make_generator
    from unirg.evaluation.testset import PREDICTIONS_FILE, load_test_set, write_predictions

    source, sep, path = (args.data or "").partition(":")
    if not sep or not source or not path:
        raise UnirgError(f"--data {args.data!r}: expected SOURCE:PATH, e.g. rexrank:/data/mimic-cxr_test.json")
    dataset = load_test_set(source, path, args.split, args.max_studies)
    generator = None
    load_seconds = 0.0

    def generate(examples):
        nonlocal generator, load_seconds
        if generator is None:  # loaded only when some study still needs a report
            started = time.perf_counter()
            generator = make_generator(args.model, args.backend, args.max_new_tokens)
            load_seconds = time.perf_counter() - started
        return generator.generate(examples)

    out_file = args.out / PREDICTIONS_FILE
    rows, timing = write_predictions(generate, dataset, out_file, args.batch_size)
    # Throughput counts generation only; loading the model (and starting an engine) is reported apart.
    timing["load_seconds"] = load_seconds
    timing["seconds"] -= load_seconds
    if timing["generated"] and timing["seconds"] > 0:
        timing["studies_per_second"] = timing["generated"] / timing["seconds"]
    timing["backend"] = generator.backend if generator else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generation.json").write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    print(f"{out_file}: {timing['generated']} reports generated, {timing['reused']} already there"
          + (f" ({timing['studies_per_second']:.2f} studies/s, {timing['backend']})" if timing["generated"] else ""))
    settings = score_mode(args, [r["prediction"] for r in rows], [r["reference_findings"] for r in rows],
                          [r["reference_impression"] for r in rows], models)
    add_nlg(args, settings, [r["prediction"] for r in rows], [r["reference_findings"] for r in rows])
    return settings


def add_nlg(args: argparse.Namespace, settings: dict, completions: list[str], findings: list[str]) -> None:
    """With --nlg: the NLG table (nlg_* keys) of the findings setting, on the same texts that setting scores."""
    if not args.nlg or "findings" not in settings:
        return
    from unirg.evaluation.nlg import nlg_table
    from unirg.evaluation.rexrank import without_reasoning
    from unirg.prompts.parser import parse_completion

    kept = [i for i, f in enumerate(findings) if f and f.strip()]
    if args.mode == "rexrank":
        hypotheses = [without_reasoning(completions[i]) for i in kept]
    else:
        parsed = [parse_completion(completions[i]) for i in kept]
        hypotheses = [p.findings or p.report for p in parsed]
    table = nlg_table(hypotheses, [findings[i].strip() for i in kept])
    settings["findings"].update({f"nlg_{key}": value for key, value in table.items()})


def score_mode(args: argparse.Namespace, completions: list[str], findings: list[str], impressions: list[str],
               models, reference_labels=None) -> dict:
    """The tables of `args.mode` for completions and their reference sections."""
    if args.mode == "rexrank":
        from unirg.evaluation.rexrank import rexrank_settings

        return rexrank_settings(completions, findings, impressions, models)
    from unirg.evaluation.metrics import evaluate_settings

    return evaluate_settings(completions, findings, impressions, reference_labels, models)


def parse_metric_options(items: list[str]) -> dict[str, dict]:
    """{plugin: {key: value}} from PLUGIN.KEY=VALUE strings; values read as YAML scalars (5 → int)."""
    import yaml

    from unirg.errors import UnirgError

    options: dict[str, dict] = {}
    for item in items:
        name_key, sep, value = item.partition("=")
        plugin, dot, key = name_key.partition(".")
        if not sep or not dot or not plugin or not key:
            raise UnirgError(f"--metric-option {item!r}: expected PLUGIN.KEY=VALUE, e.g. "
                             "bertscore.model=/weights/distilroberta-base")
        options.setdefault(plugin, {})[key] = yaml.safe_load(value)
    return options


def _findings_of(reference: str) -> str:
    from unirg.prompts.parser import parse_completion

    parsed = parse_completion(reference)
    return parsed.findings if parsed.has_findings_header else parsed.report


def _impression_of(reference: str) -> str:
    from unirg.prompts.parser import parse_completion

    return parse_completion(reference).impression
