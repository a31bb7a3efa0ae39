"""The files of a teacher store (``jina5.teacher.store``): the key format, the store's error, sha256
checksums read in blocks, JSON records, atomic ``.npy`` writes, the origin check every part and
legacy shard passes, and the reading of a legacy ``shard-<id>.npz`` (the in-RAM cache before the
store), verified as before (checksum, origin, shapes).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jina5.atomic import atomic_file

KEY_BYTES = 20
KEY_DTYPE = np.dtype(f"S{KEY_BYTES}")  # fixed width; every key is exactly 20 bytes, so order = memcmp
FORMAT = 2
ORIGIN_KEYS = ("fingerprint", "dim", "instruction")  # what every part records about its teacher
_BLOCK = 1 << 20


class TeacherStoreError(RuntimeError):
    """The store on disk cannot be used as it is (other teacher/dims/instruction, corrupt, incomplete)."""


def file_sha256(*paths: Path) -> bytes:
    """sha256 over the concatenated bytes of ``paths``, read in blocks (no mapping)."""
    h = hashlib.sha256()
    buf = bytearray(_BLOCK)
    view = memoryview(buf)
    for path in paths:
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(view[:n])
    return h.digest()


def read_json(path: Path, way_out: str) -> dict:
    """``path``'s JSON; an unreadable file raises TeacherStoreError naming it, the cause and ``way_out``."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as err:
        raise TeacherStoreError(f"{path}: unreadable ({err}); {way_out}") from None


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as fh:
        np.save(fh, array)


def delete_advice(paths: Sequence[Path], then: str) -> str:
    """The way out that deletes ``paths`` (every file it takes, a directory whole), as a command to
    paste: ``delete ... <then>: rm -rf -- <paths>``."""
    quoted = " ".join(shlex.quote(str(p)) for p in paths)
    return f"delete {'it' if len(paths) == 1 else 'them'} {then}: rm -rf -- {quoted}"


def check_origin(where: Path, origin: dict, meta: dict, files: Sequence[Path] | None = None) -> None:
    """Refuse a part or shard whose recorded teacher fingerprint, dim or instruction is not this store's;
    the error's way out deletes ``files`` (default: ``where`` alone)."""
    way_out = delete_advice(files or [where], "(its texts are then computed by this teacher)")
    if origin.get("fingerprint") != meta["fingerprint"]:
        raise TeacherStoreError(
            f"{where}: written by teacher {str(origin.get('fingerprint'))[:16]}, "
            f"this cache is {meta['fingerprint'][:16]}; {way_out}"
        )
    for key in ("dim", "instruction"):
        if origin.get(key) != meta[key]:
            raise TeacherStoreError(
                f"{where}: written with {key}={origin.get(key)!r}, this cache has {meta[key]!r}; {way_out}"
            )


def read_legacy_shard(shard: Path, meta: dict, dim: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(keys (n,) S20, emb (n, D) fp16, whether it records its origin) of a verified legacy shard."""
    try:
        with np.load(shard) as z:
            keys, emb, checksum = z["keys"], z["emb"], bytes(z["checksum"])
            origin = {k: z[k].item() for k in ORIGIN_KEYS if k in z.files}
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as err:
        raise TeacherStoreError(
            f"{shard}: truncated or corrupt ({err}); {delete_advice([shard], 'to recompute its texts')}"
        ) from None
    if origin:
        check_origin(shard, origin, meta)
    if emb.ndim != 2 or emb.shape[1] != dim or keys.shape != (emb.shape[0], KEY_BYTES):
        raise TeacherStoreError(
            f"{shard}: shapes keys {keys.shape} emb {emb.shape} do not fit teacher dim {dim}"
        )
    digest = hashlib.sha256(
        np.ascontiguousarray(keys).tobytes() + np.ascontiguousarray(emb).tobytes()
    ).digest()
    if digest != checksum:
        raise TeacherStoreError(
            f"{shard}: checksum mismatch (corrupt); {delete_advice([shard], 'to recompute its texts')}"
        )
    return np.ascontiguousarray(keys).view(KEY_DTYPE).reshape(-1), emb, bool(origin)
