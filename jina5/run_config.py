"""A run's config: its name, how it is composed, and whether a run directory holds the same one.

Name. ``experiment_name`` defaults to the experiment config chosen (``experiment=loss_ablation/nce``
-> ``loss_ablation/nce``; none chosen -> ``default``) through the ``chosen_experiment`` resolver,
registered on import of this module (as is ``lightning_precision``: the trainer's precision from the
top-level ``precision`` policy, ``jina5.precision``). An experiment file that sets ``experiment_name`` keeps its own
(``ablation/combined`` -> ``combined``). The run directory is ``<output_root>/runs/<run_name>`` with
``run_name = <experiment_name>-seed<seed>``.

Reuse. A run directory is named by ``run_name``, not by every setting, so
``python -m jina5.train experiment=ablation/combined optimizer.lr=3e-4`` after a default run would
otherwise skip (``done.json``) or resume (``last.ckpt``) the default run and report it as the
lr=3e-4 one. ``jina5.runs`` writes the resolved config to ``<run dir>/config.yaml`` before fitting
and, before reusing anything, compares it with the new one via :func:`config_changes`. Keys in
:data:`RESUME_SAFE` may differ (bookkeeping and logging, or ``trainer.max_steps``: extending a run);
paths that contain the run directory are compared relative to it, so a moved ``outputs/`` still
matches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from jina5.precision import lightning_precision

CONF_DIR = Path(__file__).resolve().parent / "conf"

RESUME_SAFE = (
    "skip_done",
    "ckpt_path",
    "export",
    "paths",
    "logger",
    "callbacks.last_checkpoint",
    "callbacks.lr_monitor",  # logging only (runs from before it was dropped: the module logs train/lr)
    "trainer.max_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
)


def chosen_experiment(default: str, *, _root_: DictConfig) -> str:
    """``${chosen_experiment:<default>}``: the experiment config chosen for this composition (its path
    under jina5/conf/experiment), else ``default``.

    Read from the config's own ``hydra`` node (the compose API with ``return_hydra_config=True``),
    else from the running Hydra app (``@hydra.main`` hands the task its config without that node).
    """
    choices = OmegaConf.select(_root_, "hydra.runtime.choices", default=None)
    if choices is None:
        if not HydraConfig.initialized():
            raise ValueError(
                "experiment_name: no Hydra runtime to read the chosen experiment from; compose the "
                "config with jina5.run_config.compose (return_hydra_config=True) or set experiment_name"
            )
        choices = HydraConfig.get().runtime.choices
    return choices.get("experiment") or default


OmegaConf.register_new_resolver("chosen_experiment", chosen_experiment, replace=True)
OmegaConf.register_new_resolver(
    "lightning_precision", lightning_precision, replace=True
)  # jina5/conf/trainer/*


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The real config tree (jina5/conf/``config_name``.yaml) composed with ``overrides``, with Hydra's
    runtime node kept (``cfg.hydra``), so ``experiment_name`` and the run directory resolve."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": leaf}; lists are leaves."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _relative(value: Any, run_dir: str) -> Any:
    return value.replace(run_dir, "<run dir>") if isinstance(value, str) and run_dir else value


def config_changes(stored: Mapping, current: Mapping) -> list[str]:
    """``"key: old -> new"`` for every leaf that differs outside :data:`RESUME_SAFE` (sorted)."""
    old, new = flatten(stored), flatten(current)
    old_dir, new_dir = str(old.get("paths.output_dir", "")), str(new.get("paths.output_dir", ""))
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if any(key == safe or key.startswith(safe + ".") for safe in RESUME_SAFE):
            continue
        a, b = _relative(old.get(key, "<absent>"), old_dir), _relative(new.get(key, "<absent>"), new_dir)
        if a != b:
            changes.append(f"{key}: {a!r} -> {b!r}")
    return changes


def check_same_run(cfg: DictConfig, run_dir: Path) -> None:
    """Raise if ``run_dir/config.yaml`` holds another config than ``cfg`` (see the module docstring)."""
    saved = run_dir / "config.yaml"
    if not saved.exists():
        return
    changes = config_changes(
        OmegaConf.to_container(OmegaConf.load(saved), resolve=False),
        OmegaConf.to_container(cfg, resolve=True),
    )
    if changes:
        shown = "\n  ".join(changes[:10]) + (
            f"\n  ... and {len(changes) - 10} more" if len(changes) > 10 else ""
        )
        raise ValueError(
            f"{run_dir} holds a run trained with another config ({saved}); reusing it would report that run "
            f"for this one. Changed:\n  {shown}\nGive this run its own directory, e.g. "
            "run_name='${experiment_name}-lr3e-4-seed${seed}', or retrain in place with skip_done=false ckpt_path=null."
        )
