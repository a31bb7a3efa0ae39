"""Reading data files: strict decoding, zip members, CSV, YAML, line files, and local record files.

Every reader fails with a ``DataFormatError`` naming the file (and the row, line or column) when a
file cannot be read as its format says; nothing is guessed silently.

Local record files (``read_local_file``): ``.jsonl`` (one object a line), ``.json`` (a list of objects, or
an object of equal-length column lists), ``.csv`` (UTF-8, header row, every cell a str) and ``.parquet``;
their column names come with the records, so a file with columns but no row (a header-only CSV) is told
apart from a file with no column at all.
"""

from __future__ import annotations

import bz2
import io
import json
import logging
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

logger = logging.getLogger(__name__)

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class DataFormatError(ValueError):
    """A data file cannot be read as its format says (the message names the file)."""


def decode(raw: bytes, source: str, encodings: Sequence[str] = ("utf-8",)) -> tuple[str, str]:
    """Decode ``raw`` with the first of ``encodings`` that decodes it strictly; returns (text, encoding).

    Raises DataFormatError naming ``source`` and the first undecodable byte offset.
    """
    first: UnicodeDecodeError | None = None
    for enc in encodings:
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError as err:
            first = first or err
    assert first is not None
    bad = raw[first.start : first.start + 8]
    raise DataFormatError(
        f"{source}: undecodable bytes at offset {first.start} ({bad!r}) as {'/'.join(encodings)}"
    ) from first


def read_text_file(path: Path, encodings: Sequence[str] = ("utf-8",)) -> tuple[str, str]:
    """Text of ``path`` (plain or ``.bz2``) and the encoding that decoded it."""
    raw = path.read_bytes()
    if path.suffix == ".bz2":
        raw = bz2.decompress(raw)
    return decode(raw, str(path), encodings)


def read_zip_member(path: Path, member: str | None = None) -> tuple[bytes, str]:
    """Bytes of ``member`` (default: the only member) of zip ``path`` and its label ``path!member``."""
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if member is None:
            if len(names) != 1:
                raise DataFormatError(f"{path}: expected one member, found {names}")
            member = names[0]
        if member not in names:
            raise DataFormatError(f"{path}: no member {member!r} (members: {names})")
        return zf.read(member), f"{path}!{member}"


def read_csv_text(
    text: str, source: str, required: Iterable[str] = (), na_columns: Iterable[str] = ()
) -> pd.DataFrame:
    """Parse CSV ``text`` with every cell a str (no NaN: empty cells are "").

    ``required`` columns must exist (DataFormatError naming ``source`` and the column); in
    ``na_columns`` the R missing value ``NA`` becomes "".
    """
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise DataFormatError(f"{source}: an empty CSV (no header row, no rows)") from err
    except pd.errors.ParserError as err:
        raise DataFormatError(f"{source}: not a readable CSV: {err}") from err
    for column in required:
        if column not in df.columns:
            raise DataFormatError(f"{source}: missing column {column!r} (columns: {list(df.columns)})")
    for column in na_columns:
        df[column] = df[column].mask(df[column].str.strip() == "NA", "")
    return df


def read_yaml(path: Path) -> Any:
    """The YAML document of ``path`` (UTF-8), read with a safe loader."""
    text, _ = read_text_file(path)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # a safe loader (C-accelerated when available)
    except yaml.YAMLError as err:
        raise DataFormatError(f"{path}: not valid YAML: {err}") from err


def read_lines(path: Path, encodings: Sequence[str] = ("utf-8",)) -> list[str]:
    """Lines of a one-document-per-line file (a missing final newline is fine)."""
    text, enc = read_text_file(path, encodings)
    if enc != encodings[0]:
        logger.info("%s decoded as %s", path, enc)
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _read_json_records(path: Path) -> list[dict[str, Any]]:
    """``.jsonl``: one object a line. ``.json``: a list of objects, or an object of equal-length column lists."""
    text, _ = read_text_file(path)
    if path.suffix == ".jsonl":
        records = []
        for n, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataFormatError(f"{path}: line {n} is not JSON: {err}") from err
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}: not JSON: {err}") from err
        if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
            records = [dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)]
        else:
            records = data
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataFormatError(f"{path}: expected JSON objects (one per record)")
    return records


def read_local_file(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Records of a local ``.jsonl`` / ``.json`` / ``.csv`` (UTF-8, header row) / ``.parquet`` file and
    its column names: the CSV header, the Parquet schema, the keys of the JSON records (first seen order).

    A header-only CSV gives ``([], header)``: its columns survive though it has no record; an empty
    file (blank) gives ``([], [])``.
    """
    if path.suffix in (".jsonl", ".json"):
        records = _read_json_records(path)
        return records, list(dict.fromkeys(key for record in records for key in record))
    if path.suffix == ".csv":
        text, _ = read_text_file(path)
        if not text.strip():  # no header, no row: an empty file, like an empty .jsonl
            return [], []
        df = read_csv_text(text, str(path))
        return df.to_dict("records"), [str(c) for c in df.columns]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.to_pylist(), list(table.column_names)
    raise DataFormatError(f"{path}: unsupported file type (supported: {LOCAL_SUFFIXES})")


def local_files(path: Path) -> list[Path]:
    """``[path]`` for a file; for a directory its ``LOCAL_SUFFIXES`` files, sorted by name."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in LOCAL_SUFFIXES)
    if not files:
        raise DataFormatError(f"{path}: no {'/'.join(LOCAL_SUFFIXES)} files in this directory")
    return files
