"""The frozen teacher and its on-disk embedding cache.

Teacher vectors are computed once per (teacher fingerprint, instruction, text) and reused by every
run of a sweep: on a CPU the teacher costs more per text than a student training step. The teacher
encodes under the compute-precision policy (``jina5.model.precision``: bf16 autocast where the hardware has
it); the path taken is part of the fingerprint, so bf16 and fp32 vectors never share a cache.

The cache is a ``jina5.teacher.store.TeacherStore`` directory (its module doc: memory-mapped fp16
parts, a sorted key index, atomic commits, checksums, each part's teacher fingerprint). Keys are
sha1(``cache_text(text)``); a cold fill embeds the missing texts sorted by length in chunks of
``shard_size`` (one part each), so several caches or processes may add to one directory and an
interrupted fill resumes from the last committed part.

One filler per chunk: a process embeds a chunk holding its fill lock (``<store>/fill-locks/<chunk
digest>.lock``, ``jina5.locking.HolderLock``), so two processes filling one store (two pre-computes, two
runs of a sweep sharing a teacher) never compute a text twice: each skips the chunks the other holds,
then waits for them, saying whose they are, and reads their parts. A killed filler's locks are released
by the kernel; what it had not committed is embedded by whoever takes its lock next.

Filling on a GPU: ``Teacher.place(device)`` moves the weights and resolves the precision policy for
that device (bf16 on a bf16 GPU under ``auto``; part of the fingerprint, as always); a teacher placed on
an accelerator also has that device type in its fingerprint (``device_fingerprint``: a GPU's vectors
and a CPU's never share a store; a CPU teacher's fingerprint is what it always was). Large stores are
pre-computed across ranks before training: ``python -m jina5.teacher <training overrides>``
(``jina5.teacher.precompute``).
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from jina5.assets import cache_root
from jina5.locking import HolderLock, describe
from jina5.model.encoder import Encoder
from jina5.model.io import content_fingerprint
from jina5.model.precision import resolve_precision
from jina5.teacher.store import TeacherStore
from jina5.teacher.store_files import KEY_DTYPE, TeacherStoreError

log = logging.getLogger(__name__)

TeacherCacheError = TeacherStoreError  # the cache on disk cannot be used as it is
FILL_LOCKS = "fill-locks"  # the store's folder of chunk fill locks (TeacherCache.fill_lock)


def cache_text(text: str) -> str:
    """The text the teacher sees and the cache key is made of: NFC, whitespace collapsed (case kept)."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_key(text: str) -> bytes:
    """20-byte sha1 of ``cache_text(text)``."""
    return hashlib.sha1(cache_text(text).encode("utf-8")).digest()


def device_fingerprint(content: str, device_type: str) -> str:
    """The store fingerprint of a teacher of ``content`` fingerprint computing on ``device_type``: the
    content fingerprint itself on the CPU (every store made so far), else sha256 of both."""
    if device_type == "cpu":
        return content
    return hashlib.sha256(f"{content} computed on {device_type}".encode()).hexdigest()


class Teacher:
    """A frozen embedding model (any ``Encoder`` backbone + pooling), no gradients.

    Args:
        source: model source (see ``jina5.assets``), e.g. ``sentence-transformers/all-mpnet-base-v2``.
        pooling / max_length / append_eos / padding_side: as for ``Encoder``.
        batch_size: texts per forward pass when filling the cache.
        precision: ``auto | bf16 | fp32``, the compute precision (``jina5.model.precision``); resolved here for
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
        self.precision_choice = precision
        self.device_type = next(self.encoder.parameters()).device.type  # where it computes (place)
        self.encoder.compute_precision = resolve_precision(precision, self.device_type)
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

    def place(self, device: str | torch.device, move_weights: bool = True) -> None:
        """Resolve the precision policy and the fingerprint for ``device`` and, unless ``move_weights``
        is False, move the weights there. A rank that only reads the store resolves without moving, so
        it finds the store the filling ranks write; a rank that embeds must move (its vectors are
        stored under this device's fingerprint)."""
        device = torch.device(device)
        precision = resolve_precision(self.precision_choice, device.type)
        if precision != self.encoder.compute_precision or device.type != self.device_type:
            self.encoder.compute_precision = precision
            self.device_type = device.type
            self._fingerprint = None
        if move_weights:
            self.encoder.to(device)

    @property
    def fingerprint(self) -> str:
        """sha256 over the architecture config, the encoding settings (not the prompts: the instruction
        is a cache key of its own), the compute precision when not fp32, and every weight's bytes;
        placed on an accelerator (``place``), that digest and the device type hashed again
        (``device_fingerprint``): a GPU's vectors never share a store with a CPU's."""
        if self._fingerprint is None:
            content = content_fingerprint(self.encoder, skip_settings=("source", "prompts"))
            self._fingerprint = device_fingerprint(content, self.device_type)
        return self._fingerprint

    def embed(self, texts: Sequence[str], instruction: str = "") -> np.ndarray:
        """(N, D) float32 unit vectors of ``instruction + cache_text(t)`` (no cache)."""
        prepared = [instruction + cache_text(t) for t in texts]
        return self.encoder.encode(prepared, batch_size=self.batch_size)


class TeacherCache:
    """Content-addressed, resumable fp16 store of one teacher's vectors under one instruction
    (``jina5.teacher.store``: memory-mapped parts, a sorted key index).

    ``get(texts)`` returns (N, D) float32 vectors and ``rows(texts)`` a lazy ``TeacherRows`` view,
    both computing (batched by length, with a texts/s bar) and persisting only the texts not stored
    yet; with ``read_only`` a missing text is an error naming the pre-compute command instead.
    """

    def __init__(
        self,
        teacher: Teacher,
        instruction: str = "",
        path: str | Path | None = None,
        shard_size: int = 1024,
        progress: bool = True,
        read_only: bool = False,
    ) -> None:
        self.teacher = teacher
        self.instruction = instruction
        self.shard_size = shard_size
        self.progress = progress
        instr = hashlib.sha1(instruction.encode()).hexdigest()[:12]
        self.path = Path(path) if path else cache_root() / "teacher" / f"{teacher.fingerprint[:16]}-{instr}"
        meta = {
            "fingerprint": teacher.fingerprint,
            "instruction": instruction,
            "dim": teacher.dim,
            "source": teacher.source,
        }
        self.store = TeacherStore(self.path, meta, read_only=read_only)

    def refresh(self) -> None:
        """Take in the parts that appeared on disk since the last look (other caches or processes)."""
        self.store.refresh()

    def __len__(self) -> int:
        return len(self.store)

    def write_index(self) -> None:
        """Merge the parts' keys into the store's index file when some part is not in it yet."""
        self.store.refresh()
        if self.store.unindexed_parts():
            self.store.write_index()

    def __contains__(self, text: str) -> bool:
        return bool(self.store.locate(keys_of([text]))[0, 0] >= 0)

    def missing(self, texts: Sequence[str]) -> list[str]:
        """Distinct texts (first occurrence order) whose vectors are not stored."""
        keys = keys_of(texts)
        absent = np.flatnonzero(self.store.locate(keys)[:, 0] < 0)
        _, first = np.unique(keys[absent], return_index=True)
        return [texts[i] for i in absent[np.sort(first)]]

    def fill(self, texts: Sequence[str]) -> int:
        """Compute and persist every missing text, shard by shard; returns how many were computed.

        The order is the embedded default's since the first cache: the missing texts sorted by
        length (stable), cut into chunks of ``shard_size``, each chunk one ``Teacher.embed`` call and
        one part (a bf16 teacher's output depends on which texts share a batch)."""
        self.refresh()
        todo = self.missing(texts)
        if not todo:
            return 0
        if self.store.read_only:
            raise TeacherCacheError(
                f"teacher store {self.path}: {len(todo)} of these texts are not stored (e.g. {todo[0][:60]!r}) "
                "and this rank opens it read-only; pre-compute it with the training overrides: "
                "python -m jina5.teacher <the same overrides as python -m jina5.train>"
            )
        todo.sort(key=len)  # similar lengths per shard -> little padding inside the encoder batches
        self.embed_chunks([todo[lo : lo + self.shard_size] for lo in range(0, len(todo), self.shard_size)])
        return len(todo)

    def embed_chunks(self, chunks: Sequence[Sequence[str]]) -> None:
        """Embed each chunk in one ``Teacher.embed`` call and commit it as one part, holding its fill
        lock (:meth:`fill_lock`); a chunk another process holds is left for last, then waited for and
        read from its part (or, if that process died without committing it, embedded here)."""
        total = sum(len(c) for c in chunks)
        bar = tqdm(
            total=total,
            unit="text",
            desc=f"teacher cache ({Path(self.teacher.source).name})",
            disable=not self.progress,
        )
        start = time.perf_counter()
        computed, busy = 0, []
        foreign: set[bytes] = set()  # keys in the parts other processes committed meanwhile
        for chunk in chunks:
            lock = self.fill_lock(chunk)
            if lock.try_acquire():
                computed += self._embed_locked(chunk, lock, foreign)
                bar.update(len(chunk))
            else:
                busy.append((chunk, lock))
        for chunk, lock in busy:
            if not lock.try_acquire():
                log.info(
                    "teacher store %s: %d texts are being embedded by %s; waiting to read them (lock %s)",
                    self.path,
                    len(chunk),
                    describe(lock.holder()),
                    lock.path,
                )
                lock.acquire()
            computed += self._embed_locked(chunk, lock, foreign)
            bar.update(len(chunk))
        bar.close()
        rate = computed / max(time.perf_counter() - start, 1e-9)
        log.info(
            "teacher cache %s: computed %d texts (%.1f texts/s), read %d another process computed, %d cached",
            self.path,
            computed,
            rate,
            total - computed,
            len(self),
        )

    def fill_lock(self, chunk: Sequence[str]) -> HolderLock:
        """The lock a process holds while it embeds ``chunk`` into this store:
        ``fill-locks/<sha1 of the chunk's keys>.lock`` in the store (one filler per chunk, so two
        processes filling one store never compute a text twice)."""
        digest = hashlib.sha1(keys_of(chunk).tobytes()).hexdigest()[:20]
        return HolderLock(self.path / FILL_LOCKS / f"{digest}.lock")

    def _embed_locked(self, chunk: Sequence[str], lock: HolderLock, foreign: set[bytes]) -> int:
        """Embed and commit what of ``chunk`` (texts missing when the fill began) is not stored yet, with
        its ``lock`` held: the keys of the parts other processes committed since are added to ``foreign``
        (only their keys files are read) and left out. The lock file is removed once the chunk is stored.
        Returns the texts embedded."""
        try:
            known = len(self.store.parts)
            if self.store.refresh():
                for part_no in range(known, len(self.store.parts)):
                    foreign.update(self.store.part_keys(part_no).tolist())
            todo = [t for t, key in zip(chunk, keys_of(chunk).tolist(), strict=True) if key not in foreign]
            if todo:
                emb = self.teacher.embed(todo, self.instruction)
                if not np.isfinite(emb).all():
                    raise TeacherCacheError(
                        f"teacher produced non-finite vectors for the chunk of {todo[0][:60]!r}..."
                    )
                self.store.write_part(keys_of(todo), emb.astype(np.float16))
        except BaseException:
            lock.release()  # not stored: the file stays, so the next filler locks this same file
            raise
        lock.release(remove=True)
        return len(todo)

    def rows(self, texts: Sequence[str]) -> TeacherRows:
        """A lazy (N, D) float32 view of ``texts``' vectors (computing what is missing first)."""
        self.fill(texts)
        loc = self.store.locate(keys_of(texts))
        return TeacherRows(self.store, loc)

    def get(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32 teacher vectors for ``texts`` (computing what is missing first)."""
        return self.rows(texts)[:]


class TeacherRows:
    """(N, D) float32 teacher vectors of N texts, read from the store when indexed.

    Holds (N, 2) int32 store locations (8 bytes a text) instead of the vectors (4 D bytes a text):
    ``rows[i]`` is (D,), ``rows[idx]`` (len(idx), D) for a sequence, array or slice."""

    def __init__(self, store: TeacherStore, loc: np.ndarray) -> None:
        if len(loc) and loc[:, 0].min() < 0:
            raise TeacherCacheError(
                f"teacher store {store.path}: {int((loc[:, 0] < 0).sum())} texts are not stored"
            )
        self.store, self.loc = store, loc

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.loc), self.store.dim)

    def __len__(self) -> int:
        return len(self.loc)

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self.store.gather(self.loc[idx][None])[0]
        return self.store.gather(self.loc[idx])


def keys_of(texts: Sequence[str]) -> np.ndarray:
    """(N,) |S20 store keys (``text_key``) of ``texts``."""
    return np.frombuffer(b"".join(text_key(t) for t in texts), dtype=KEY_DTYPE)
