"""Read CSV files that may be gzip-compressed, with 1-based line numbers as spreadsheet users see them."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from pathlib import Path

from unirg.errors import DataError


def find_file(folder: Path, names: tuple[str, ...], what: str, doc: str) -> Path:
    """The first of `names` (plain or .gz) that exists under `folder`."""
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"{folder}: {what} not found (looked for {', '.join(names)} and .gz); see {doc}")


def read_csv(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; the header is line 1."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        # surrogateescape: bytes that are not UTF-8 survive as lone surrogates, and the row holding them
        # becomes a bad row ("not UTF-8 text") in records_from_rows instead of silently altered text.
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape", newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                yield reader.line_num, row
    except (OSError, csv.Error) as error:
        raise DataError(f"{path}: cannot read CSV ({error})") from error
