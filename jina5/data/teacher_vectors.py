"""Filling the teacher store across ranks (``PairDataModule.attach_teacher_vectors``).

Under several ranks only global rank 0 fills, exactly as a single process would (the same texts, order
and chunks, so the same vectors); the others wait at a barrier, then open the store read-only. The texts
of rank-local tables (an ``hf:`` source read in shares, one per rank) are then filled by each rank for
its own share (parts of unique names), and rank 0 indexes every rank's parts.
"""

from __future__ import annotations

from collections.abc import Callable

from lightning.pytorch.strategies import Strategy

from jina5.teacher.cache import TeacherCache


def fill_teacher_caches(
    teacher_caches: Callable[..., tuple[TeacherCache, TeacherCache]],
    teacher_texts: Callable[..., list[tuple[int, list[str]]]],
    strategy: Strategy | None,
    rank0: bool,
    rank_local: bool,
) -> tuple[TeacherCache, TeacherCache]:
    """The (query, document) caches, filled with ``teacher_texts()`` and, with ``rank_local``, this
    rank's ``teacher_texts(rank_local=True)``; ``teacher_caches(read_only=...)`` opens them.
    ``strategy``: the trainer's under several ranks (its barriers), else None (one process)."""
    several = strategy is not None
    if several and not rank0:
        strategy.barrier("teacher_store_filled")
    caches = teacher_caches(read_only=not (rank0 or rank_local))
    for side, texts in teacher_texts():
        caches[side].fill(texts)
    if several and rank0:
        for cache in dict.fromkeys(caches):
            cache.write_index()
        strategy.barrier("teacher_store_filled")
    if rank_local:  # every rank fills its own share's texts (parts of unique names), rank 0 indexes them
        for side, texts in teacher_texts(rank_local=True):
            caches[side].fill(texts)
        strategy.barrier("teacher_store_rank_local_filled")
        if rank0:
            for cache in dict.fromkeys(caches):
                cache.write_index()
        strategy.barrier("teacher_store_indexed")
        for cache in dict.fromkeys(caches):
            cache.refresh()
    return caches
