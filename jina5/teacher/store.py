"""The teacher-vector store on disk: memory-mapped fp16 parts, a sorted key index, no model.

One directory holds one teacher's vectors under one instruction (``jina5.teacher.cache.TeacherCache`` names
it and fills it; ``python -m jina5.teacher`` pre-computes it)::

    meta.json                 {"fingerprint", "instruction", "dim", "dtype": "float16", "source", "format": 2}
    part-<id>.keys.npy        (n,) |S20   sha1(cache_text(text)) of each row
    part-<id>.emb.npy         (n, D) float16 vectors, row i = keys[i]
    part-<id>.json            the commit marker, written last: {"rows", "fingerprint", "dim", "instruction",
                              "sha256": sha256(keys file bytes || emb file bytes)}
    index.json                {"parts": [names], "keys": "index-<id>.keys.npy", "loc": "index-<id>.loc.npy",
                              "rows", "sha256"}: a merge of the listed parts (written by ``write_index``)
    index-<id>.keys.npy       (N,) |S20 every distinct key, sorted
    index-<id>.loc.npy        (N, 2) int32 (part number in ``parts``, row) of each key

Lookup of B texts: B sha1 keys -> ``np.searchsorted`` over the sorted keys (the index file's, memory
mapped, then an in-memory one over the parts the index does not list yet) -> (part, row) -> the rows
gathered from each part's memory-mapped ``emb`` and converted to float32 (only those rows). No Python
dict, no table in RAM: a process holds the (N, 2) locations it asked for and the pages it touched
(page cache, shared by every process that maps the same files).

Guarantees:
- Atomic: every file is written under a temporary name and renamed; a part exists only once its
  ``.json`` is renamed into place, after both arrays, so a killed writer leaves no half part (an
  ``.npy`` without its ``.json`` is ignored and recomputed).
- Content-addressed: rows are found by the hash of their text; a key stored twice (two writers) is
  read from the first part in name order.
- Integrity: every committed part's two files are hashed at open (sha256, read in 1 MiB blocks, not
  mapped, so the pages do not count in this process's RSS) and their shapes checked: a torn or
  corrupt part raises ``TeacherStoreError`` naming the file. Cost: linear in the store's size,
  about 7 s per rank for 1M x 2560-d (5 GB) at 0.7 GB/s (experiments/bench_teacher_store.py).
- Origin: each part records its teacher fingerprint, dim and instruction; a part of another teacher
  (copied in) is refused with its file named.
- Legacy shards (``shard-<id>.npz``, the layout of an in-RAM cache) are migrated once, when the
  directory is opened for writing: verified (checksum, origin), copied bit for bit into
  ``part-legacy-<id>``, and left in place for any other reader of that layout sharing the cache.
"""

from __future__ import annotations

import json
import logging
import mmap
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jina5.atomic import atomic_write_bytes
from jina5.teacher.store_files import (
    FORMAT,
    KEY_DTYPE,
    ORIGIN_KEYS,
    TeacherStoreError,
    atomic_save_npy,
    check_origin,
    delete_advice,
    file_sha256,
    read_json,
    read_legacy_shard,
)

log = logging.getLogger(__name__)

_warned_legacy: set[Path] = set()  # store dirs whose origin-less legacy shards were reported


@dataclass
class _Part:
    """One committed part: its name, row count and (opened on first use) memory-mapped vectors."""

    name: str
    rows: int
    emb: np.ndarray | None = None

    def __getstate__(self) -> dict:  # a DataLoader worker re-maps instead of receiving a copy
        return {"name": self.name, "rows": self.rows, "emb": None}


class TeacherStore:
    """The parts of one store directory, opened for lookups (and for writing unless ``read_only``).

    Args:
        path: the store directory.
        meta: {"fingerprint", "instruction", "dim", "source"} of the teacher it holds; compared with
            meta.json and every part's record.
        read_only: never write (training ranks other than 0): a missing meta.json or an unmigrated
            legacy shard is an error instead.
    """

    def __init__(self, path: str | Path, meta: dict, read_only: bool = False) -> None:
        self.path = Path(path)
        self.meta = {**meta, "dtype": "float16", "format": FORMAT}
        self.dim = int(meta["dim"])
        self.read_only = read_only
        self.parts: list[_Part] = []
        self._part_no: dict[str, int] = {}
        self._index_keys = np.empty(0, KEY_DTYPE)  # the index file's keys (mapped) or empty
        self._index_loc = np.empty((0, 2), np.int32)
        self._index_files: tuple[str, str] | None = None  # the mapped index files' names
        self._delta_parts: list[int] = []  # parts the index file does not list
        self._delta: tuple[np.ndarray, np.ndarray] | None = None  # (sorted keys, loc) of those; None: stale
        self._open()

    # ----------------------------------------------------------------- opening
    def _open(self) -> None:
        meta_file = self.path / "meta.json"
        if not meta_file.exists():
            if self.read_only:
                raise TeacherStoreError(
                    f"{meta_file}: no teacher store here (opened read-only); fill it first: python -m jina5.teacher ..."
                )
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(meta_file, json.dumps(self.meta, indent=2).encode())
        have = read_json(meta_file, delete_advice([self.path], "to rebuild the store"))
        for key in ("fingerprint", "instruction", "dim", "dtype"):
            if have.get(key) != self.meta[key]:
                raise TeacherStoreError(
                    f"{meta_file}: made with {key}={have.get(key)!r}, this teacher has {self.meta[key]!r} "
                    f"(teacher {self.meta.get('source')}); use another cache path, or "
                    f"{delete_advice([self.path], 'to rebuild the store for this teacher')}"
                )
        if have.get("format", 1) != FORMAT and not self.read_only:
            atomic_write_bytes(meta_file, json.dumps({**have, "format": FORMAT}, indent=2).encode())
        self._migrate_legacy()
        self.parts, self._part_no, self._delta_parts, self._delta = [], {}, [], None  # numbered afresh below
        self._load_index()
        self.refresh()

    def refresh(self) -> int:
        """Take in the parts committed since the last look (other processes); returns how many."""
        new = [
            f.name[: -len(".json")]
            for f in sorted(self.path.glob("part-*.json"))
            if f.name[: -len(".json")] not in self._part_no
        ]
        for name in new:
            self._add_part(name, self._verify_part(name))
        return len(new)

    def _verify_part(self, name: str) -> int:
        """Origin, shapes and checksum of committed part ``name``; returns its row count."""
        files = self.part_files(name)
        record_file, keys_file, emb_file = files
        recompute = delete_advice(files, "to recompute the part's texts")
        record = read_json(record_file, recompute)
        check_origin(record_file, record, self.meta, files)
        rows = int(record["rows"])
        for file, shape, dtype in ((keys_file, (rows,), KEY_DTYPE), (emb_file, (rows, self.dim), np.float16)):
            try:
                arr = np.load(file, mmap_mode="r")
            except (ValueError, OSError, EOFError) as err:
                raise TeacherStoreError(f"{file}: truncated or corrupt ({err}); {recompute}") from None
            if arr.shape != shape or arr.dtype != dtype:
                raise TeacherStoreError(
                    f"{file}: {arr.dtype} {arr.shape}, its record {record_file.name} says {np.dtype(dtype)} {shape}"
                )
            del arr
        if file_sha256(keys_file, emb_file).hex() != record["sha256"]:
            raise TeacherStoreError(f"{emb_file}: checksum mismatch (corrupt); {recompute}")
        return rows

    def part_files(self, name: str) -> list[Path]:
        """Part ``name``'s files: its commit marker ``.json`` (first: without it the part is gone), its keys,
        its vectors."""
        return [self.path / f"{name}.json", self.path / f"{name}.keys.npy", self.path / f"{name}.emb.npy"]

    def part_keys(self, part_no: int) -> np.ndarray:
        """(n,) |S20 keys of committed part ``part_no`` (its keys file, read whole)."""
        return np.load(self.path / f"{self.parts[part_no].name}.keys.npy")

    def _add_part(self, name: str, rows: int) -> None:
        self._part_no[name] = len(self.parts)
        self.parts.append(_Part(name, rows))
        self._delta_parts.append(self._part_no[name])
        self._delta = None

    def _load_index(self) -> None:
        """Map the index file when every part it lists is present (else it is stale: ignored)."""
        index_file = self.path / "index.json"
        if not index_file.exists():
            return
        index = read_json(index_file, delete_advice([index_file], "(the index is rebuilt from the parts)"))
        if not all((self.path / f"{n}.json").exists() for n in index["parts"]):
            log.warning("teacher store %s: index.json lists parts that are gone; ignored", self.path)
            return
        keys_file, loc_file = self.path / index["keys"], self.path / index["loc"]
        if file_sha256(keys_file, loc_file).hex() != index["sha256"]:
            rebuild = delete_advice(
                [index_file, keys_file, loc_file], "(the index is rebuilt from the parts)"
            )
            raise TeacherStoreError(f"{keys_file}: index checksum mismatch; {rebuild}")
        for name in index["parts"]:
            self._add_part(name, self._verify_part(name))
        self._delta_parts = []
        self._index_files = (index["keys"], index["loc"])
        self._map_index()

    def _map_index(self) -> None:
        if self._index_files is not None:
            self._index_keys = np.load(self.path / self._index_files[0], mmap_mode="r").view(np.ndarray)
            self._index_loc = np.load(self.path / self._index_files[1], mmap_mode="r").view(np.ndarray)

    # ----------------------------------------------------------------- legacy shards
    def _migrate_legacy(self) -> None:
        """Copy each ``shard-<id>.npz`` not yet migrated into part ``part-legacy-<id>`` (bit for bit)."""
        todo = [
            f
            for f in sorted(self.path.glob("shard-*.npz"))
            if not f.name.endswith(".tmp.npz")
            and not (self.path / f"part-legacy-{f.stem[len('shard-') :]}.json").exists()
        ]
        if not todo:
            return
        if self.read_only:
            raise TeacherStoreError(
                f"{todo[0]}: a legacy shard not migrated yet; open {self.path} once for writing "
                "(python -m jina5.teacher ..., or a 1-rank run) to migrate it"
            )
        legacy = []  # the origin-less shards and the files of the parts they became
        for shard in todo:
            keys, emb, has_origin = read_legacy_shard(shard, self.meta, self.dim)
            name = self.write_part(keys, emb, name=f"part-legacy-{shard.stem[len('shard-') :]}")
            if not has_origin:
                legacy += [shard, *self.part_files(name)]
        log.info("teacher store %s: migrated %d legacy shard(s) to memory-mapped parts", self.path, len(todo))
        if legacy and self.path not in _warned_legacy:
            _warned_legacy.add(self.path)
            log.warning(
                "teacher cache %s: %d shard(s) carry no teacher fingerprint (written by an older jina5), "
                "accepted because meta.json matches this teacher (e.g. %s); to recompute their texts "
                "instead, %s",
                self.path,
                len(legacy) // 4,
                legacy[0].name,
                delete_advice(legacy, "with the parts they were migrated to"),
            )

    # ----------------------------------------------------------------- writing
    def write_part(self, keys: np.ndarray, emb: np.ndarray, name: str | None = None) -> str:
        """Commit one part: ``keys`` (n,) S20, ``emb`` (n, D) float16; returns its name."""
        if self.read_only:
            raise TeacherStoreError(f"{self.path}: opened read-only; cannot write a part")
        if emb.dtype != np.float16 or emb.shape != (len(keys), self.dim) or keys.dtype != KEY_DTYPE:
            raise ValueError(
                f"write_part: keys {keys.dtype} {keys.shape}, emb {emb.dtype} {emb.shape}, dim {self.dim}"
            )
        name = name or f"part-{uuid.uuid4().hex[:16]}"
        keys_file, emb_file = self.path / f"{name}.keys.npy", self.path / f"{name}.emb.npy"
        atomic_save_npy(keys_file, keys)
        atomic_save_npy(emb_file, emb)
        record = {
            "rows": len(keys),
            **{k: self.meta[k] for k in ORIGIN_KEYS},
            "sha256": file_sha256(keys_file, emb_file).hex(),
        }
        atomic_write_bytes(self.path / f"{name}.json", json.dumps(record).encode())
        if name not in self._part_no:
            self._add_part(name, len(keys))
        return name

    def write_index(self) -> Path:
        """Merge every part's keys into one sorted index file (the first part in name order wins a
        key stored twice); readers map it instead of sorting the keys themselves."""
        if self.read_only:
            raise TeacherStoreError(f"{self.path}: opened read-only; cannot write the index")
        self.refresh()
        order = sorted(range(len(self.parts)), key=lambda p: self.parts[p].name)
        keys, loc = self._merge(order)
        uid = uuid.uuid4().hex[:12]
        keys_name, loc_name = f"index-{uid}.keys.npy", f"index-{uid}.loc.npy"
        # part numbers in the file refer to its own `parts` list (name order)
        atomic_save_npy(self.path / keys_name, keys)
        atomic_save_npy(self.path / loc_name, loc)
        index = {
            "parts": [self.parts[p].name for p in order],
            "keys": keys_name,
            "loc": loc_name,
            "rows": len(keys),
            "sha256": file_sha256(self.path / keys_name, self.path / loc_name).hex(),
        }
        old = self.path / "index.json"
        stale = json.loads(old.read_text()) if old.exists() else None
        atomic_write_bytes(old, json.dumps(index).encode())
        if stale:  # processes that mapped them keep reading them (unlinked files live while mapped)
            for key in ("keys", "loc"):
                (self.path / stale[key]).unlink(missing_ok=True)
        return old

    def _merge(self, part_nos: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(sorted distinct keys, (N, 2) int32 (position in ``part_nos``, row)) over ``part_nos``;
        a duplicate key keeps its earliest part."""
        if not part_nos:
            return np.empty(0, KEY_DTYPE), np.empty((0, 2), np.int32)
        keys = np.concatenate([np.load(self.path / f"{self.parts[p].name}.keys.npy") for p in part_nos])
        loc = np.concatenate(
            [
                np.stack([np.full(self.parts[p].rows, i), np.arange(self.parts[p].rows)], 1)
                for i, p in enumerate(part_nos)
            ]
        ).astype(np.int32)
        order = np.argsort(keys, kind="stable")  # stable: the earliest part first among equal keys
        keys, loc = keys[order], loc[order]
        first = np.ones(len(keys), bool)
        first[1:] = keys[1:] != keys[:-1]
        return keys[first], loc[first]

    def unindexed_parts(self) -> int:
        """How many committed parts the mapped index file does not list."""
        return len(self._delta_parts)

    # ----------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return len(self._index_keys) + len(self._delta_index()[0])

    def _delta_index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._delta is None:
            keys, loc = self._merge(self._delta_parts)
            if len(loc):
                loc[:, 0] = np.asarray(self._delta_parts, np.int32)[loc[:, 0]]
            if len(self._index_keys):  # the index file wins a key both hold
                keep = ~_member(self._index_keys, keys)
                keys, loc = keys[keep], loc[keep]
            self._delta = (keys, loc)
        return self._delta

    def locate(self, keys: np.ndarray) -> np.ndarray:
        """(B, 2) int32 (part, row) of each key; -1 rows where a key is not stored."""
        out = np.full((len(keys), 2), -1, np.int32)
        for sorted_keys, loc in ((self._index_keys, self._index_loc), self._delta_index()):
            todo = np.flatnonzero(out[:, 0] < 0)
            if not len(todo) or not len(sorted_keys):
                continue
            pos = np.searchsorted(sorted_keys, keys[todo]).clip(max=len(sorted_keys) - 1)
            hit = sorted_keys[pos] == keys[todo]
            out[todo[hit]] = loc[pos[hit]]
        return out

    def gather(self, loc: np.ndarray) -> np.ndarray:
        """(B, D) float32 vectors at ``loc`` (B, 2) (part, row): only those rows are read and converted."""
        loc = np.asarray(loc).reshape(-1, 2)
        out = np.empty((len(loc), self.dim), dtype=np.float32)
        if len(loc) and loc[:, 0].min() < 0:
            raise KeyError(f"{int((loc[:, 0] < 0).sum())} texts are not in the teacher store {self.path}")
        order = np.argsort(loc[:, 0], kind="stable")
        parts, rows = loc[order, 0], loc[order, 1]
        starts = np.flatnonzero(np.r_[True, parts[1:] != parts[:-1]])
        for lo, hi in zip(starts, np.r_[starts[1:], len(order)], strict=True):  # one read per part touched
            out[order[lo:hi]] = self._emb(int(parts[lo]))[rows[lo:hi]]
        return out

    def _emb(self, part_no: int) -> np.ndarray:
        part = self.parts[part_no]
        if part.emb is None:
            mapped = np.load(self.path / f"{part.name}.emb.npy", mmap_mode="r")
            if hasattr(mmap, "MADV_RANDOM") and getattr(mapped, "_mmap", None) is not None:
                mapped._mmap.madvise(mmap.MADV_RANDOM)  # rows are read at random: no readahead around them
            part.emb = mapped.view(np.ndarray)  # plain ndarray: np.memmap's per-index wrapping costs more
        return part.emb

    def __getstate__(self) -> dict:  # mapped arrays are re-mapped by the receiver, never copied
        state = dict(self.__dict__)
        state["_index_keys"], state["_index_loc"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._index_keys, self._index_loc = np.empty(0, KEY_DTYPE), np.empty((0, 2), np.int32)
        self._map_index()


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Whether each of ``keys`` is in ``sorted_keys`` (non-empty, sorted)."""
    pos = np.searchsorted(sorted_keys, keys).clip(max=len(sorted_keys) - 1)
    return sorted_keys[pos] == keys
