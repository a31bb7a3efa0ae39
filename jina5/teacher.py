"""The frozen teacher and its on-disk embedding cache.

Teacher vectors are computed once per (teacher fingerprint, instruction, text) and reused by every
run of a sweep: on a CPU the teacher costs more per text than a student training step. The teacher
encodes under the compute-precision policy (``jina5.precision``: bf16 autocast where the hardware has
it); the path taken is part of the fingerprint, so bf16 and fp32 vectors never share a cache.

Cache layout (``TeacherCache.path``)::

    meta.json            {"fingerprint", "instruction", "dim", "dtype": "float16", "source"}
    shard-<uid>.npz      keys (n, 20) uint8 = sha1(cache_text(text)), emb (n, D) float16,
                         checksum = sha256(keys bytes + emb bytes), and the shard's origin as 0-d
                         arrays: fingerprint (str), dim (int), instruction (str)
    shard-<uid>.npz      ...

Each shard is written to a temporary file and renamed into place only when complete, so an
interrupted run resumes from the last finished shard and never reads half a shard. Shard names are
unique, so several caches (or processes of a sweep) may add to one directory; each picks up the
others' shards before computing. On load every
shard's checksum and shape is verified; a cache made by another teacher, with another instruction
or dimension, or a truncated/corrupt shard raises ``TeacherCacheError`` naming the file. So does a
shard whose recorded origin is not this cache's (another teacher's shard copied in). Shards written
before shards carried their origin are accepted as legacy, since meta.json matched, with one warning
per cache directory and process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import unicodedata
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jina5.assets import cache_root
from jina5.encoder import Encoder
from jina5.encoder_io import content_fingerprint
from jina5.precision import resolve_precision

log = logging.getLogger(__name__)

ORIGIN_KEYS = ("fingerprint", "dim", "instruction")  # what every shard records about its teacher
_warned_legacy: set[Path] = set()  # cache dirs whose legacy shards were reported in this process


class TeacherCacheError(RuntimeError):
    """The cache on disk cannot be used as it is (other teacher/dims/instruction, or corrupt)."""


def cache_text(text: str) -> str:
    """The text the teacher sees and the cache key is made of: NFC, whitespace collapsed (case kept)."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_key(text: str) -> bytes:
    """20-byte sha1 of ``cache_text(text)``."""
    return hashlib.sha1(cache_text(text).encode("utf-8")).digest()


class Teacher:
    """A frozen embedding model (any ``Encoder`` backbone + pooling), no gradients.

    Args:
        source: model source (see ``jina5.assets``), e.g. ``sentence-transformers/all-mpnet-base-v2``.
        pooling / max_length / append_eos / padding_side: as for ``Encoder``.
        batch_size: texts per forward pass when filling the cache.
        precision: ``auto | bf16 | fp32``, the compute precision (``jina5.precision``); resolved here for
            the encoder's device, and part of the fingerprint when it is bf16.
        encoder: a ready ``Encoder`` instead of ``source`` (tests).
    """

    def __init__(
        self,
        source: str | None = None,
        pooling: str = "mean",
        max_length: int = 128,
        append_eos: bool = False,
        padding_side: str = "right",
        batch_size: int = 32,
        torch_dtype: str | None = None,
        precision: str = "fp32",
        encoder: Encoder | None = None,
    ) -> None:
        self.encoder = encoder or Encoder(
            source,
            pooling=pooling,
            max_length=max_length,
            append_eos=append_eos,
            padding_side=padding_side,
            torch_dtype=torch_dtype,
        )
        self.encoder.eval().requires_grad_(False)
        device_type = next(self.encoder.parameters()).device.type
        self.encoder.compute_precision = resolve_precision(precision, device_type)
        self.batch_size = batch_size
        self.source = str(source or self.encoder.source)
        self._fingerprint: str | None = None

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def precision(self) -> str:
        """The compute precision the teacher encodes with: ``"bf16"`` or ``"fp32"``."""
        return self.encoder.compute_precision

    @property
    def fingerprint(self) -> str:
        """sha256 over the architecture config, the encoding settings (not the prompts: the instruction
        is a cache key of its own), the compute precision when not fp32, and every weight's bytes."""
        if self._fingerprint is None:
            self._fingerprint = content_fingerprint(self.encoder, skip_settings=("source", "prompts"))
        return self._fingerprint

    def embed(self, texts: Sequence[str], instruction: str = "") -> np.ndarray:
        """(N, D) float32 unit vectors of ``instruction + cache_text(t)`` (no cache)."""
        prepared = [instruction + cache_text(t) for t in texts]
        return self.encoder.encode(prepared, batch_size=self.batch_size)


class TeacherCache:
    """Content-addressed, resumable fp16 store of one teacher's vectors under one instruction.

    ``get(texts)`` returns (N, D) float32 vectors, computing (batched by length, with a texts/s bar)
    and persisting only the texts not cached yet.
    """

    def __init__(
        self,
        teacher: Teacher,
        instruction: str = "",
        path: str | Path | None = None,
        shard_size: int = 1024,
        progress: bool = True,
    ) -> None:
        self.teacher = teacher
        self.instruction = instruction
        self.shard_size = shard_size
        self.progress = progress
        instr = hashlib.sha1(instruction.encode()).hexdigest()[:12]
        self.path = Path(path) if path else cache_root() / "teacher" / f"{teacher.fingerprint[:16]}-{instr}"
        self._index: dict[bytes, tuple[int, int]] = {}
        self._shards: list[np.ndarray] = []
        self._loaded: set[str] = set()
        self._legacy: list[str] = []  # shards without a recorded origin (written by older code)
        self._open()

    # ----------------------------------------------------------------- on-disk state
    def _meta(self) -> dict:
        return {
            "fingerprint": self.teacher.fingerprint,
            "instruction": self.instruction,
            "dim": self.teacher.dim,
            "dtype": "float16",
            "source": self.teacher.source,
        }

    def _open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        meta_file = self.path / "meta.json"
        want = self._meta()
        if meta_file.exists():
            try:
                have = json.loads(meta_file.read_text())
            except json.JSONDecodeError as err:
                raise TeacherCacheError(
                    f"{meta_file}: unreadable ({err}); delete the directory to rebuild"
                ) from None
            for key in ("fingerprint", "instruction", "dim", "dtype"):
                if have.get(key) != want[key]:
                    raise TeacherCacheError(
                        f"{meta_file}: made with {key}={have.get(key)!r}, this teacher has {want[key]!r} "
                        f"(teacher {want['source']}); use another cache path or delete it"
                    )
        else:
            _atomic_write_bytes(meta_file, json.dumps(want, indent=2).encode())
        self.refresh()

    def refresh(self) -> None:
        """Load the shards that appeared on disk since the last look (other caches or processes)."""
        for shard_file in sorted(self.path.glob("shard-*.npz")):
            if shard_file.name not in self._loaded and not shard_file.name.endswith(".tmp.npz"):
                self._load_shard(shard_file)
        if self._legacy and self.path not in _warned_legacy:
            _warned_legacy.add(self.path)
            log.warning(
                "teacher cache %s: %d shard(s) carry no teacher fingerprint (written by an older jina5), "
                "accepted because meta.json matches this teacher (e.g. %s); delete them to recompute",
                self.path,
                len(self._legacy),
                self._legacy[0],
            )

    def _check_origin(self, shard_file: Path, origin: dict) -> None:
        """Refuse a shard whose recorded teacher fingerprint, dim or instruction is not this cache's."""
        if "fingerprint" not in origin:
            self._legacy.append(shard_file.name)
            return
        want = {
            "fingerprint": self.teacher.fingerprint,
            "dim": self.teacher.dim,
            "instruction": self.instruction,
        }
        if origin["fingerprint"] != want["fingerprint"]:
            raise TeacherCacheError(
                f"{shard_file}: written by teacher {origin['fingerprint'][:16]}, "
                f"this cache is {want['fingerprint'][:16]}; delete it"
            )
        for key in ("dim", "instruction"):
            if origin.get(key) != want[key]:
                raise TeacherCacheError(
                    f"{shard_file}: written with {key}={origin.get(key)!r}, this cache has {want[key]!r}; delete it"
                )

    def _load_shard(self, shard_file: Path) -> None:
        try:
            with np.load(shard_file) as z:
                keys, emb, checksum = z["keys"], z["emb"], bytes(z["checksum"])
                origin = {k: z[k].item() for k in ORIGIN_KEYS if k in z.files}
        except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as err:
            raise TeacherCacheError(
                f"{shard_file}: truncated or corrupt ({err}); delete it to recompute"
            ) from None
        self._check_origin(shard_file, origin)
        if emb.ndim != 2 or emb.shape[1] != self.teacher.dim or keys.shape != (emb.shape[0], 20):
            raise TeacherCacheError(
                f"{shard_file}: shapes keys {keys.shape} emb {emb.shape} do not fit teacher dim {self.teacher.dim}"
            )
        if _checksum(keys, emb) != checksum:
            raise TeacherCacheError(f"{shard_file}: checksum mismatch (corrupt); delete it to recompute")
        shard_id = len(self._shards)
        self._shards.append(emb)
        self._loaded.add(shard_file.name)
        for row, key in enumerate(keys):
            self._index[key.tobytes()] = (shard_id, row)

    def _write_shard(self, keys: list[bytes], emb: np.ndarray) -> None:
        shard_file = self.path / f"shard-{uuid.uuid4().hex[:16]}.npz"
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 20)
        emb16 = emb.astype(np.float16)
        tmp = shard_file.with_suffix(".tmp.npz")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                keys=key_arr,
                emb=emb16,
                checksum=np.frombuffer(_checksum(key_arr, emb16), np.uint8),
                fingerprint=np.array(self.teacher.fingerprint),
                dim=np.array(self.teacher.dim, dtype=np.int64),
                instruction=np.array(self.instruction),
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, shard_file)
        self._load_shard(shard_file)

    # ----------------------------------------------------------------- API
    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, text: str) -> bool:
        return text_key(text) in self._index

    def missing(self, texts: Sequence[str]) -> list[str]:
        """Distinct texts (first occurrence order) whose vectors are not cached."""
        seen: set[bytes] = set()
        out = []
        for t in texts:
            k = text_key(t)
            if k not in self._index and k not in seen:
                seen.add(k)
                out.append(t)
        return out

    def fill(self, texts: Sequence[str]) -> int:
        """Compute and persist every missing text, shard by shard; returns how many were computed."""
        self.refresh()
        todo = self.missing(texts)
        if not todo:
            return 0
        todo.sort(key=len)  # similar lengths per shard -> little padding inside the encoder batches
        bar = tqdm(
            total=len(todo),
            unit="text",
            desc=f"teacher cache ({Path(self.teacher.source).name})",
            disable=not self.progress,
        )
        start = time.perf_counter()
        for lo in range(0, len(todo), self.shard_size):
            chunk = todo[lo : lo + self.shard_size]
            emb = self.teacher.embed(chunk, self.instruction)
            if not np.isfinite(emb).all():
                raise TeacherCacheError(
                    f"teacher produced non-finite vectors for shard starting at text {lo}"
                )
            self._write_shard([text_key(t) for t in chunk], emb)
            bar.update(len(chunk))
        bar.close()
        rate = len(todo) / max(time.perf_counter() - start, 1e-9)
        log.info(
            "teacher cache %s: computed %d texts (%.1f texts/s), %d cached",
            self.path,
            len(todo),
            rate,
            len(self),
        )
        return len(todo)

    def get(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32 teacher vectors for ``texts`` (computing what is missing first)."""
        self.fill(texts)
        out = np.empty((len(texts), self.teacher.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            shard, row = self._index[text_key(t)]
            out[i] = self._shards[shard][row]
        return out


def _checksum(keys: np.ndarray, emb: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(keys).tobytes() + np.ascontiguousarray(emb).tobytes()).digest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
