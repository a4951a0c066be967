"""`unirg label`: CheXpert-14 labels of the reports in a CSV with the rule-based labeler."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from unirg.errors import DataError


def register(subparsers) -> None:
    """Add the `label` subcommand."""
    parser = subparsers.add_parser(
        "label", help="Label reports with the 14 CheXpert observations (1, 0, -1 or blank), offline.")
    parser.add_argument("--input", required=True, help="CSV file with one report per row.")
    parser.add_argument("--text-columns", default="report",
                        help="Comma-separated columns joined (in order) into the report text, e.g. findings,impression.")
    parser.add_argument("--id-column", default="uid", help="Column copied to the output as the row id.")
    parser.add_argument("--out", required=True, help="CSV file to write: the id column plus 14 label columns.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the reports, label them, write the labels."""
    from rewards.labeler import OBSERVATIONS, label_report

    path = Path(args.input)
    if not path.is_file():
        raise DataError(f"--input {path}: file not found")
    columns = [c.strip() for c in args.text_columns.split(",") if c.strip()]
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in [args.id_column, *columns] if c not in header]
        if missing:
            raise DataError(f"{path}: no column(s) {missing}; the header has {header}. "
                            "Set --id-column and --text-columns")
        rows = []
        for row_number, row in enumerate(reader, start=2):
            if row.get(args.id_column) in (None, ""):
                raise DataError(f"{path}, row {row_number}: empty {args.id_column!r}")
            text = "\n".join((row.get(c) or "").strip() for c in columns)
            rows.append([row[args.id_column], *_cells(label_report(text))])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([args.id_column, *OBSERVATIONS])
        writer.writerows(rows)
    print(f"labeled {len(rows)} reports from {path} into {out}")
    return 0


def _cells(labels) -> list[str]:
    return ["" if value is None else str(value) for value in labels]
