"""The one row schema every data source is turned into.

A row is a dict with these columns (absent fields are empty: ``""``, ``[]`` or ``None``):

========== ============== ==============================================================
column     type           meaning
========== ============== ==============================================================
query      str            the query / first text of a pair ("" when the task has none)
document   str            the document / positive / the single text of a row
negatives  list[str]      mined hard negatives for ``query`` (usually [])
score      float | None   graded similarity of (query, document) (STS)
label      str            class / cluster name (classification, clustering)
dataset    str            name of the data set the row came from
task       str            one of TASKS
language   str            language of the texts ("" when unknown)
========== ============== ==============================================================

What each task requires (non-empty after ``strip()``):

- ``retrieval``: query, document (query -> document pairs)
- ``sts``: query, document and a finite score
- ``classification``, ``clustering``: document and label
- ``unlabeled``: document (raw text, for distillation)

``make_dataset`` validates every row and fails on the first bad one with a message naming the data set,
the row index and the column. Parsers may attach statistics (raw rows, filtered rows by reason) which
are stored as JSON in ``Dataset.info.description``; read them back with ``dataset_stats``.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

import datasets

COLUMNS: tuple[str, ...] = ("query", "document", "negatives", "score", "label", "dataset", "task", "language")
TASKS: tuple[str, ...] = ("retrieval", "sts", "classification", "clustering", "unlabeled")

# Text columns that must be non-empty for each task.
REQUIRED_TEXT: dict[str, tuple[str, ...]] = {
    "retrieval": ("query", "document"),
    "sts": ("query", "document"),
    "classification": ("document", "label"),
    "clustering": ("document", "label"),
    "unlabeled": ("document",),
}

FEATURES = datasets.Features(
    {
        "query": datasets.Value("string"),
        "document": datasets.Value("string"),
        "negatives": datasets.List(datasets.Value("string")),
        "score": datasets.Value("float64"),
        "label": datasets.Value("string"),
        "dataset": datasets.Value("string"),
        "task": datasets.Value("string"),
        "language": datasets.Value("string"),
    }
)

_STR_COLUMNS = ("query", "document", "label", "dataset", "task", "language")


def normalise_text(s: str) -> str:
    r"""Text key used for deduplication: NFKC, lower case, whitespace runs collapsed to one space, stripped.

    ``str.split()`` splits on exactly the characters ``re``'s ``\s`` matches (``str.isspace``), so this is
    ``re.sub(r"\s+", " ", t).strip()``, three times faster (it runs on every text of every split)."""
    return " ".join(unicodedata.normalize("NFKC", s).lower().split())


def _where(name: str, index: int, column: str) -> str:
    return f"dataset {name!r}, row {index}, column {column!r}"


def _check_str(value: Any, name: str, index: int, column: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(
            f"{_where(name, index, column)}: expected str, got {type(value).__name__} {value!r:.80}"
        )
    return value


def _check_negatives(value: Any, name: str, index: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(
            f"{_where(name, index, 'negatives')}: expected a list of str, got {type(value).__name__}"
        )
    for k, neg in enumerate(value):
        if not isinstance(neg, str) or not neg.strip():
            raise ValueError(
                f"{_where(name, index, 'negatives')}: negative {k} is not a non-empty str: {neg!r:.80}"
            )
    return list(value)


def _check_score(value: Any, name: str, index: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(
            f"{_where(name, index, 'score')}: expected a finite number or None, got {value!r:.80}"
        )
    return float(value)


def validate_row(row: dict[str, Any], name: str, index: int) -> dict[str, Any]:
    """Check one row against the schema and return it with every column filled (absent -> empty).

    ``dataset`` defaults to ``name``. Raises ValueError naming ``name``, ``index`` and the column.
    """
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise ValueError(
            f"dataset {name!r}, row {index}: unknown column(s) {unknown}; the schema has {list(COLUMNS)}"
        )
    out: dict[str, Any] = {c: _check_str(row.get(c), name, index, c) for c in _STR_COLUMNS}
    out["negatives"] = _check_negatives(row.get("negatives"), name, index)
    out["score"] = _check_score(row.get("score"), name, index)
    out["dataset"] = out["dataset"] or name
    task = out["task"]
    if task not in TASKS:
        raise ValueError(f"{_where(name, index, 'task')}: {task!r} is not one of {list(TASKS)}")
    for column in REQUIRED_TEXT[task]:
        if not out[column].strip():
            raise ValueError(f"{_where(name, index, column)}: empty text, which task {task!r} requires")
    if task == "sts" and out["score"] is None:
        raise ValueError(f"{_where(name, index, 'score')}: task 'sts' requires a score")
    return out


def make_dataset(
    rows: list[dict[str, Any]], name: str, *, stats: dict[str, Any] | None = None
) -> datasets.Dataset:
    """Validate ``rows`` (see ``validate_row``) and build an in-memory Dataset with ``FEATURES``.

    ``stats`` (JSON-serialisable, e.g. ``{"raw_rows": 1000, "filtered": {"empty agenda": 74}}``) is
    stored in ``ds.info.description``; ``dataset_stats(ds)`` returns it.
    """
    checked = [validate_row(row, name, i) for i, row in enumerate(rows)]
    columns = {c: [row[c] for row in checked] for c in COLUMNS}
    info = datasets.DatasetInfo(
        description=json.dumps({"name": name, **(stats or {})}, sort_keys=True), features=FEATURES
    )
    return datasets.Dataset.from_dict(columns, features=FEATURES, info=info)


def dataset_stats(ds: datasets.Dataset) -> dict[str, Any]:
    """The statistics ``make_dataset`` stored (``{}`` when the description is not ours)."""
    try:
        stats = json.loads(ds.info.description or "{}")
    except json.JSONDecodeError:
        return {}
    return stats if isinstance(stats, dict) else {}
