"""The batch stream: one dataset per step, a pure function of (seed, step).

Every step draws ONE dataset (probability proportional to its row count, or to its configured weight)
and takes a batch of that dataset's own batch size, as the paper does. Because batch k depends on
(seed, k) alone, a resumed run continues with exactly the batches an uninterrupted run would have seen,
and each DDP rank takes its own rows of the same dataset at the same step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def check_batch_sizes(
    names: Sequence[str], sizes: Sequence[int], batch_sizes: Sequence[int], world_size: int
) -> None:
    """Raise ValueError naming every dataset with fewer rows than ``batch_size x world_size`` (one step
    takes that many distinct rows of one dataset, ``world_size`` ranks each a batch)."""
    small = [
        f"{name} ({n} rows < {b} x {world_size})"
        for name, n, b in zip(names, sizes, batch_sizes, strict=True)
        if n < b * world_size
    ]
    if small:
        raise ValueError(
            f"datasets need at least batch_size x world_size rows: {', '.join(small)}; lower their "
            "batch_size, or raise their max_rows (or data.max_rows_cap)"
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
    ) -> None:
        check_batch_sizes(names or [str(i) for i in range(len(sizes))], sizes, batch_sizes, world_size)
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
            per_pass = n // (b * self.world_size)
            epoch, j = divmod(used[d], per_pass)
            used[d] += 1
            if step >= start:
                if (d, epoch) not in perms:
                    perms = {k: v for k, v in perms.items() if k[0] != d}
                    perms[(d, epoch)] = np.random.default_rng([self.seed, d, epoch]).permutation(n)
                lo = (j * self.world_size + self.rank) * b
                yield [(d, int(i)) for i in perms[(d, epoch)][lo : lo + b]]
            step += 1
