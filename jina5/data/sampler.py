"""The batch stream: one dataset per step, a pure function of (seed, step).

Every step draws ONE dataset (probability proportional to its row count, or to its configured weight)
and takes a batch of that dataset's own batch size, as the paper does. Because batch k depends on
(seed, k) alone, a resumed run continues with exactly the batches an uninterrupted run would have seen,
and each DDP rank takes its own rows of the same dataset at the same step.

Two kinds of table: a table every rank holds whole (bundled corpora, local files) is sliced by rank here
(rank r takes the r-th batch of each ``world_size x batch_size`` window of a shared permutation); a
rank-local table (an hf: source, each rank read its own share of the rows) is batched by each rank as a
one-rank stream over its own rows. Either way a step takes ``world_size x batch_size`` distinct rows.

Small datasets (fewer rows than ``batch_size x world_size``; for a rank-local table, fewer than
``batch_size`` on a rank) are refused by ``check_batch_sizes`` naming them and the ways out, unless their
spec says ``allow_small``: then the permutations of successive passes are laid end to end and each step
takes the next window of that endless row sequence, so rows repeat (within a step when the dataset has
fewer rows than a step takes; the text-id masks of InfoNCE keep duplicates out of each other's negatives).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def check_batch_sizes(
    names: Sequence[str],
    sizes: Sequence[int],
    batch_sizes: Sequence[int],
    world_size: int,
    allow_small: Sequence[bool] | None = None,
) -> None:
    """Raise ValueError naming every dataset with fewer rows than ``batch_size x world_size`` (one step
    takes that many distinct rows of one dataset, ``world_size`` ranks each a batch), with its row count,
    batch size and world size, unless its ``allow_small`` is set (its rows then repeat)."""
    allow = allow_small or [False] * len(names)
    small = [
        f"{name} ({n} rows < {b} x {world_size})"
        for name, n, b, ok in zip(names, sizes, batch_sizes, allow, strict=True)
        if n < b * world_size and not ok
    ]
    if small:
        raise ValueError(
            f"datasets need at least batch_size x world_size rows: {', '.join(small)}; lower their "
            "batch_size (data.datasets.<name>.batch_size), raise their max_rows (or data.max_rows_cap), "
            "leave them out (data.datasets.<name>=null), or set ++data.datasets.<name>.allow_small=true to "
            "repeat their rows"
        )


def check_rank_shares(
    names: Sequence[str],
    sizes: Sequence[int],
    batch_sizes: Sequence[int],
    world_size: int,
    short_on: Sequence[int],
) -> None:
    """Raise ValueError naming every rank-local dataset (an hf: source, each rank reads its own share)
    that holds fewer than its batch size of rows on some rank (``short_on``: on how many ranks; 0 for
    the others), with its rows over all ranks (``sizes``) and the ways out."""
    short = [
        f"{name} (fewer than {b} rows on {k} of {world_size} ranks; {n} rows in all)"
        for name, b, k, n in zip(names, batch_sizes, short_on, sizes, strict=True)
        if k
    ]
    if short:
        raise ValueError(
            f"a hub dataset needs a batch_size of rows on every rank (each reads its own share): "
            f"{', '.join(short)}; lower its batch_size, raise its max_rows, leave it out "
            "(data.datasets.<name>=null), or set ++data.datasets.<name>.allow_small=true to repeat its rows"
        )


class OneDatasetPerStep(Sampler[list[tuple[int, int]]]):
    """Infinite stream of batches; batch k is [(dataset index, row index), ...] of ONE dataset.

    Batch k's dataset is drawn from ``Generator(seed, k)``; within a dataset, rows follow a seeded
    permutation per pass, and rank r of W takes the r-th slice of that dataset's next W * batch_size
    rows, so ranks never share rows within a step. ``start_step()`` is read when iteration begins:
    the stream resumes at the trainer's position after a checkpoint restore.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_sizes: Sequence[int],
        weights: Sequence[float],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_step: Callable[[], int] = lambda: 0,
        names: Sequence[str] | None = None,
        rank_local: Sequence[bool] | None = None,
        allow_small: Sequence[bool] | None = None,
    ) -> None:
        self.rank_local = list(rank_local or [False] * len(sizes))
        self.allow_small = list(allow_small or [False] * len(sizes))
        names = names or [str(i) for i in range(len(sizes))]
        for local in (False, True):  # a rank-local table is a one-rank stream over this rank's rows
            picked = [i for i in range(len(sizes)) if self.rank_local[i] == local]
            check_batch_sizes(
                [names[i] + (f" on rank {rank}" if local else "") for i in picked],
                [sizes[i] for i in picked],
                [batch_sizes[i] for i in picked],
                1 if local else world_size,
                [self.allow_small[i] for i in picked],
            )
        p = np.asarray(weights, dtype=np.float64)
        self.probs = p / p.sum()
        self.sizes, self.batch_sizes = list(sizes), list(batch_sizes)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.start_step = start_step

    def dataset_at(self, step: int) -> int:
        return int(np.random.default_rng([self.seed, step]).choice(len(self.sizes), p=self.probs))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        start = self.start_step()
        used = [0] * len(self.sizes)  # batches drawn so far from each dataset
        perms: dict[tuple[int, int], np.ndarray] = {}
        step = 0
        while True:
            d = self.dataset_at(step)
            b, n = self.batch_sizes[d], self.sizes[d]
            world, rank = (1, 0) if self.rank_local[d] else (self.world_size, self.rank)
            if n < b * world:  # allow_small (checked in __init__): the next window of passes laid end to end
                lo = (used[d] * world + rank) * b
                used[d] += 1
                if step >= start:
                    order = {e: self._perm(d, e) for e in range(lo // n, (lo + b - 1) // n + 1)}
                    yield [(d, int(order[q // n][q % n])) for q in range(lo, lo + b)]
                step += 1
                continue
            per_pass = n // (b * world)
            epoch, j = divmod(used[d], per_pass)
            used[d] += 1
            if step >= start:
                if (d, epoch) not in perms:
                    perms = {k: v for k, v in perms.items() if k[0] != d}
                    perms[(d, epoch)] = self._perm(d, epoch)
                lo = (j * world + rank) * b
                yield [(d, int(i)) for i in perms[(d, epoch)][lo : lo + b]]
            step += 1

    def _perm(self, d: int, epoch: int) -> np.ndarray:
        """Pass ``epoch``'s order of dataset ``d``'s rows: a pure function of (seed, d, epoch)."""
        return np.random.default_rng([self.seed, d, epoch]).permutation(self.sizes[d])
