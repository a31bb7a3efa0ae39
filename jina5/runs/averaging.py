"""Checkpoint weight averaging (the retrieval adapter's final weights; the paper averages the last
checkpoint with an earlier one and does not say which).

    theta = w * theta_last + (1 - w) * theta_other        for every floating-point tensor

Non-floating entries (step counters, integer buffers) must agree and are taken from the last
checkpoint. The frozen backbone is the same in both, so only the adapter (and any trainable loss
parameter, e.g. the distillation projection) actually moves.

``average_with`` names the other checkpoint:
- ``best``: the ModelCheckpoint's best by its monitored metric (``checkpoints/best-step*.ckpt``);
- ``step=<n>`` (or just the integer n, handier on a Hydra command line, where ``=`` needs quoting):
  the checkpoint written at global step n by ``SaveAtSteps`` (``checkpoints/step<n>.ckpt``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from jina5.runs.checkpoints import read_checkpoint

log = logging.getLogger(__name__)

_STEP = re.compile(r"^step=(\d+)$")


def average_state_dicts(
    last: Mapping[str, Tensor], other: Mapping[str, Tensor], weight: float = 0.5
) -> dict[str, Tensor]:
    """w * last + (1 - w) * other per floating tensor; other entries must be equal (taken from last)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"average weight must be in [0, 1], got {weight}")
    if set(last) != set(other):
        diff = sorted(set(last) ^ set(other))
        raise KeyError(f"the checkpoints to average have different keys, e.g. {diff[:5]}")
    out: dict[str, Tensor] = {}
    for key, a in last.items():
        b = other[key]
        if a.shape != b.shape:
            raise ValueError(f"cannot average {key}: shapes {tuple(a.shape)} and {tuple(b.shape)}")
        if torch.is_floating_point(a):
            out[key] = weight * a + (1.0 - weight) * b.to(a.dtype)
        else:
            if not torch.equal(a, b):
                raise ValueError(f"cannot average non-floating entry {key}: the checkpoints disagree")
            out[key] = a.clone()
    return out


def parse_average_with(spec: str | int | None) -> tuple[str, int | None] | None:
    """``None`` -> None; ``best`` -> ("best", None); ``step=<n>`` or n -> ("step", n); else ValueError."""
    if spec in (None, "", "null", "none"):
        return None
    if isinstance(spec, int) and not isinstance(spec, bool):
        return ("step", spec)
    if spec == "best":
        return ("best", None)
    m = _STEP.match(str(spec))
    if not m:
        raise ValueError(
            f"adapter.average_with must be null, 'best', 'step=<n>' or an int n, got {spec!r}; e.g. "
            "adapter.average_with=100 averages with the checkpoint of step 100"
        )
    return ("step", int(m.group(1)))


def step_checkpoint(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step{step}.ckpt"


def other_checkpoint(run_dir: Path, spec: str | int, best_model_path: str | None = None) -> Path:
    """The checkpoint ``spec`` (``best`` | ``step=<n>``) names, which must exist."""
    kind, step = parse_average_with(spec) or (None, None)
    if kind == "step":
        path = step_checkpoint(run_dir, step)
    elif kind == "best":
        candidates = (
            [Path(best_model_path)]
            if best_model_path
            else sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
        )
        if not candidates:
            raise FileNotFoundError(
                f"average_with=best but {run_dir / 'checkpoints'} holds no best-*.ckpt "
                "(is a ModelCheckpoint with a monitored metric configured?)"
            )
        path = candidates[-1]
    else:
        raise ValueError(f"nothing to average with: {spec!r}")
    if not path.exists():
        raise FileNotFoundError(f"average_with={spec}: {path} does not exist")
    return path


def average_checkpoints(last: Path, other: Path, weight: float) -> dict[str, Tensor]:
    """The averaged ``state_dict`` of two Lightning checkpoints."""
    a = read_checkpoint(last, mmap=False)["state_dict"]
    b = read_checkpoint(other, mmap=False)["state_dict"]
    return average_state_dicts(a, b, weight)


class SaveAtSteps(L.Callback):
    """Save ``checkpoints/step<n>.ckpt`` when the global step reaches each n in ``steps``."""

    def __init__(self, run_dir: Path, steps: list[int]) -> None:
        self.run_dir, self.steps = Path(run_dir), sorted(set(int(s) for s in steps))

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if trainer.global_step in self.steps:
            path = step_checkpoint(self.run_dir, trainer.global_step)
            # saving is a collective: every rank follows rank 0's look at the file (rank 0 may have
            # written it before another rank looks)
            if not trainer.strategy.broadcast(path.exists(), src=0):
                trainer.save_checkpoint(path)
