"""How a sweep of experiments/sweeps.yaml trains: the ``python -m jina5.train -m`` commands (one multirun
per distinct set of overrides), the overrides that start stage 2 from a stage-1 run, replace the training
budget or select a Hydra launcher, and where a composed run config's run directory is. Nothing runs here
(experiments/sweep.py runs the commands and evaluates the runs).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from jina5.conf import compose
from jina5.report.sweep_spec import Row


def run_dir(cfg: DictConfig) -> Path:
    """Where ``jina5.train`` writes a composed training config: outputs/runs/<run_name>."""
    return Path(cfg.paths.output_root) / "runs" / cfg.run_name


def stage1_overrides(stage1: Path, base: Sequence[str]) -> list[str]:
    """Every stage-2 run starts from ``stage1`` and lives under ``<output_root>/stage2/<stage1 name>``, so
    adapters trained on different stage-1 runs never share (or skip as done) one run dir."""
    root = Path(compose(base).paths.output_root) / "stage2" / stage1.name
    return [f"init_from={stage1}", f"paths.output_root={root}"]


def budget_overrides(cfg: DictConfig, steps: int | None, lr_scale: float | None) -> list[str]:
    """A training budget for the composed run config ``cfg``: ``steps`` optimizer steps (warmup
    steps // 10, a dev check every min(steps, 100), checkpoint averaging with step steps // 2 where the
    experiment averages) and its learning rate x ``lr_scale``. None leaves the experiment's own."""
    out = []
    if steps is not None:
        out += [
            f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={max(1, min(100, steps))}",
            f"scheduler.warmup_steps={max(1, steps // 10)}",
        ]
        if (cfg.get("adapter") or {}).get("average_with") is not None:
            # ++: a multirun over several adapter experiments composes its sweep once without them
            # (adapter: null), where a plain override of adapter.* fails
            out.append(f"++adapter.average_with={steps // 2 if steps >= 2 else 'null'}")
    if lr_scale is not None:
        out.append(f"optimizer.lr={cfg.optimizer.lr * lr_scale:g}")
    return out


def training_commands(
    rows: Sequence[Row],
    own: dict[str, list[str]],
    seeds: Sequence[int],
    before: Sequence[str],
    after: Sequence[str],
) -> list[list[str]]:
    """``python -m jina5.train -m`` commands: one multirun per distinct set of per-row overrides (the row's
    grid values, then ``own``: {row label: its budget overrides}), each between ``before`` and ``after``."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for row in rows:
        groups.setdefault((*row.overrides, *own.get(row.label, [])), []).append(row.experiment)
    return [
        [
            sys.executable,
            "-m",
            "jina5.train",
            "-m",
            "experiment=" + ",".join(names),
            "seed=" + ",".join(map(str, seeds)),
            *before,
            *overrides,
            *after,
        ]
        for overrides, names in groups.items()
    ]


def shared_stage1(spec: dict, overrides: Sequence[str]) -> tuple[list[str], Path]:
    """The shared stage-1 base of a stage-2 sweep (``spec["stage1"]["experiment"]``, seed 0): its training
    command and run dir. Every sweep that names the same base trains it once (a finished run is skipped)."""
    experiment = spec["stage1"]["experiment"]
    cfg = compose([f"experiment={experiment}", "seed=0", *overrides])
    cmd = [sys.executable, "-m", "jina5.train", f"experiment={experiment}", "seed=0", *overrides]
    return cmd, run_dir(cfg).resolve()


def launcher_overrides(launcher: str | None, overrides: Sequence[str]) -> list[str]:
    """What puts a multirun under ``launcher``: ``hydra/launcher=<launcher>`` and the ``hydra.launcher.*``
    overrides among ``overrides`` (e.g. ``hydra.launcher.partition=gpu``); [] for Hydra's basic one."""
    if launcher is None:
        return []
    return [f"hydra/launcher={launcher}", *(o for o in overrides if o.startswith("hydra.launcher."))]


def sweep_values(values: Sequence[str]) -> str:
    """A Hydra sweep over ``values``, each quoted (paths may hold ``=`` or ``,``): ``'a','b'``."""
    bad = [v for v in values if "'" in v or "\\" in v]
    if bad:
        raise ValueError(f"cannot pass {bad} to a Hydra multirun (a quote or backslash in the value)")
    return ",".join(f"'{v}'" for v in values)
