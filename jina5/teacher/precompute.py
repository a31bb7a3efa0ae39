"""Pre-compute a training run's teacher store across ranks: ``python -m jina5.teacher <overrides>``.

Takes the training command's overrides (the config is ``conf/train.yaml``), loads the same
tables and dev pairs the data module would, and embeds exactly the texts its ``setup`` would fill
(``PairDataModule.teacher_texts``), so training then finds every text stored::

    python -m jina5.teacher experiment=ablation/pure_distill                    # one process
    torchrun --nproc-per-node 8 -m jina5.teacher student=qwen3_0_6b teacher=qwen3_embedding_4b
    RANK=1 WORLD_SIZE=4 python -m jina5.teacher ...                             # without a launcher

Ranks come from the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; torchrun and
SLURM wrappers set them); no process group is needed. With CUDA each rank runs the teacher on
``cuda:LOCAL_RANK`` under the precision policy (bf16 under ``auto``; ``jina5.model.precision``).

Sharding. The plan is what one process filling the caches in order would embed: per fill step, the
distinct texts not stored yet (and not planned by an earlier step of the same cache), sorted by
length, cut into chunks of ``shard_size``. Chunk ``i`` belongs to rank ``i mod world``, and each chunk
is one ``Teacher.embed`` call and one part, so the vectors are those of a single-process fill,
whatever the world size (on the same device). The first rank to arrive writes the plan to
``plan-<digest>.npz`` in the first cache's directory (an exclusive hard link, so every rank uses
that one); a killed pre-compute rerun with the same overrides finds it, skips the committed chunks
and computes only the rest. Rank 0 then waits until every planned text is stored, merges each
store's index (``TeacherStore.write_index``) and removes the plan.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

import jina5.conf  # noqa: F401  (registers the config's resolvers)
from jina5.conf.checks import check_run_config
from jina5.teacher.cache import TeacherCache, keys_of

log = logging.getLogger(__name__)

POLL_S = 5.0  # rank 0's wait for the other ranks' parts, between looks at the store


def plan_chunks(
    steps: Sequence[tuple[TeacherCache, Sequence[str]]], shard_size: int
) -> list[tuple[int, list[str]]]:
    """(step's cache number, chunk texts) in the order sequential ``TeacherCache.fill`` calls would embed
    them: per step its distinct missing texts, less those planned earlier for the same cache, sorted
    by length (stable), in chunks of ``shard_size``. Cache numbers count distinct caches in order."""
    numbers: dict[int, int] = {}
    planned: dict[int, set[bytes]] = {}
    chunks: list[tuple[int, list[str]]] = []
    for cache, texts in steps:
        no = numbers.setdefault(id(cache), len(numbers))
        seen = planned.setdefault(no, set())
        todo = []
        for text in cache.missing(texts):
            key = keys_of([text])[0]
            if key not in seen:
                seen.add(key)
                todo.append(text)
        todo.sort(key=len)
        chunks += [(no, todo[lo : lo + shard_size]) for lo in range(0, len(todo), shard_size)]
    return chunks


def _agreed_plan(
    caches: Sequence[TeacherCache], steps: Sequence[tuple[TeacherCache, Sequence[str]]], shard_size: int
) -> tuple[Path, list[tuple[int, list[str]]]]:
    """The plan every rank follows: the one on disk for these steps, else this rank's, written there."""
    digest = hashlib.sha256(str(shard_size).encode())
    for cache, texts in steps:
        digest.update(str(cache.path).encode())
        digest.update(keys_of(texts).tobytes())
    plan_file = caches[0].path / f"plan-{digest.hexdigest()[:16]}.npz"
    by_key = {keys_of([t])[0]: t for _, texts in steps for t in texts}
    if not plan_file.exists():
        chunks = plan_chunks(steps, shard_size)
        tmp = plan_file.with_name(f".{plan_file.stem}.{uuid.uuid4().hex[:8]}.tmp.npz")
        np.savez(
            tmp,
            keys=keys_of([t for _, chunk in chunks for t in chunk]),
            cache=np.array([no for no, _ in chunks], np.int64),
            bounds=np.cumsum([0] + [len(chunk) for _, chunk in chunks]),
        )
        try:
            os.link(tmp, plan_file)  # exclusive: a rank that lost the race reads the winner's
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    with np.load(plan_file) as z:
        keys, cache_no, bounds = z["keys"], z["cache"], z["bounds"]
    chunks = [
        (int(no), [by_key[k] for k in keys[lo:hi]])
        for no, lo, hi in zip(cache_no, bounds[:-1], bounds[1:], strict=True)
    ]
    return plan_file, chunks


def precompute(
    steps: Sequence[tuple[TeacherCache, Sequence[str]]],
    rank: int = 0,
    world_size: int = 1,
    shard_size: int = 1024,
    poll_s: float = POLL_S,
) -> int:
    """Embed this rank's chunks of the plan (module doc); rank 0 then waits for every chunk and writes
    each store's index. Returns how many texts this rank embedded."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world size {world_size})")
    caches = list({id(c): c for c, _ in steps}.values())
    plan_file, chunks = _agreed_plan(caches, steps, shard_size)
    mine: list[list[list[str]]] = [[] for _ in caches]  # per cache, this rank's chunks still to embed
    for i, (no, chunk) in enumerate(chunks):
        if i % world_size == rank and (todo := caches[no].missing(chunk)):  # [] once committed
            mine[no].append(todo)
    for cache, todo_chunks in zip(caches, mine, strict=True):
        if todo_chunks:
            cache.embed_chunks(todo_chunks)
    done = sum(len(c) for todo_chunks in mine for c in todo_chunks)
    log.info("teacher pre-compute rank %d/%d: embedded %d texts", rank, world_size, done)
    if rank != 0:
        return done
    waited = 0.0
    while missing := sum(len(caches[no].missing(chunk)) for no, chunk in chunks):
        if waited % 60 < poll_s:
            log.info("teacher pre-compute: waiting for %d texts of the other ranks", missing)
        time.sleep(poll_s)
        waited += poll_s
        for cache in caches:
            cache.refresh()
    for cache in caches:
        cache.write_index()
    plan_file.unlink(missing_ok=True)
    log.info(
        "teacher pre-compute: %s complete (%d texts)",
        ", ".join(str(c.path) for c in caches),
        sum(map(len, caches)),
    )
    return done


def trains_texts_only(objective: DictConfig) -> bool:
    """Whether a loss with a nonzero weight trains on texts-only batches (``needs_pairs = False`` on its
    class): else training leaves texts-only datasets out (``jina5.train.build``), and so does this."""
    weights = objective["weights"]
    return any(
        w != 0 and not getattr(get_class(objective["losses"][n]["_target_"]), "needs_pairs", True)
        for n, w in weights.items()
    )


def precompute_from_config(cfg: DictConfig, rank: int = 0, world_size: int = 1) -> int:
    """Build the run's teacher and data module as ``jina5.train.build`` does, then ``precompute``."""
    if not cfg.get("teacher") or not cfg.get("use_teacher", True):
        log.info("use_teacher is false (or no teacher config): nothing to pre-compute")
        return 0
    check_run_config(cfg)
    # the data module first: its settings are checked before the teacher loads
    datamodule = instantiate(cfg.data, encoder=None, teacher=None)
    teacher = instantiate(cfg.teacher)
    if torch.cuda.is_available():
        teacher.place(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    datamodule.teacher = teacher
    if not trains_texts_only(cfg.objective):
        datamodule.leave_out_texts_only()
    datamodule.tables = datamodule.load_tables()
    datamodule.report_long_texts()
    datamodule.dev = datamodule.load_dev()
    caches = datamodule.teacher_caches()
    steps = [(caches[side], texts) for side, texts in datamodule.teacher_texts()]
    return precompute(steps, rank, world_size, shard_size=caches[0].shard_size)


@hydra.main(version_base="1.3", config_path="pkg://jina5.conf", config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    precompute_from_config(cfg, int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


def main() -> None:
    """``python -m jina5.teacher <training overrides>`` (installed with tab completion as ``jina5-teacher``:
    ``jina5.train.teacher_main``); Hydra's log goes to ``<output_root>/teacher_precompute/<run_name>``
    (not the training run's directory)."""
    if not any(a.startswith("hydra.run.dir=") for a in sys.argv[1:]):
        sys.argv.append("hydra.run.dir=${paths.output_root}/teacher_precompute/${run_name}")
    hydra_main()


if __name__ == "__main__":
    main()
