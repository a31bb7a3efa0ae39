"""A run's config: its name, its export settings, and whether a run directory holds the same one.

Name. ``experiment_name`` defaults to the experiment config chosen (``experiment=loss_ablation/nce``
-> ``loss_ablation/nce``; none chosen -> ``default``) through the ``chosen_experiment`` resolver
(``jina5.conf``). An experiment file that sets ``experiment_name`` keeps its own
(``ablation/combined`` -> ``combined``). The run directory is ``<output_root>/runs/<run_name>`` with
``run_name = <experiment_name>-seed<seed>``.

Reuse. A run directory is named by ``run_name``, not by every setting, so
``python -m jina5.train experiment=ablation/combined optimizer.lr=3e-4`` after a default run would
otherwise skip (``done.json``) or resume (``last.ckpt``) the default run and report it as the
lr=3e-4 one. ``jina5.runs.lifecycle`` writes the resolved config to ``<run dir>/config.yaml`` before fitting
and, before reusing anything, compares it with the new one via :func:`config_changes`. Keys in
:data:`RESUME_SAFE` may differ (bookkeeping and logging, ``trainer.max_steps``: extending a run, and the
CPU speed paths, which train the same model);
paths that contain the run directory are compared relative to it, so a moved ``outputs/`` still
matches. A stored config that names a module by its path in the flat layout (``jina5.module.EmbeddingModule``)
is read with today's path (:func:`current_targets`), so those run directories are still reused. A key
added since a stored config was written (:data:`ADDED_KEYS`) is read there with the value it had then.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# module paths of the flat layout (jina5/<module>.py), which run directories' config.yaml may still name
FLAT_LAYOUT_MODULES = {
    "jina5.encoder": "jina5.model.encoder",
    "jina5.adapters": "jina5.model.adapters",
    "jina5.encoder_io": "jina5.model.io",
    "jina5.st_export": "jina5.model.st_format",
    "jina5.model_card": "jina5.model.card",
    "jina5.packing": "jina5.model.packing",
    "jina5.rope": "jina5.model.rope",
    "jina5.precision": "jina5.model.precision",
    "jina5.quantize": "jina5.model.quantize",
    "jina5.tiny": "jina5.model.tiny",
    "jina5.teacher": "jina5.teacher.cache",
    "jina5.teacher_store": "jina5.teacher.store",
    "jina5.teacher_precompute": "jina5.teacher.precompute",
    "jina5.module": "jina5.training.module",
    "jina5.objective": "jina5.training.objective",
    "jina5.distributed": "jina5.training.distributed",
    "jina5.grad_cache": "jina5.training.grad_cache",
    "jina5.strategies": "jina5.training.strategies",
    "jina5.runs": "jina5.runs.lifecycle",
    "jina5.run_config": "jina5.runs.config",
    "jina5.run_lock": "jina5.runs.lock",
    "jina5.checkpointing": "jina5.runs.checkpoints",
    "jina5.averaging": "jina5.runs.averaging",
    "jina5.curves": "jina5.runs.curves",
    "jina5.loggers": "jina5.runs.loggers",
    "jina5.multirun": "jina5.runs.multirun",
    "jina5.completion": "jina5.runs.completion",
    "jina5.stage2": "jina5.runs.init_from",
}

RESUME_SAFE = (
    "skip_done",
    "ckpt_path",
    "accept_changed_data",  # accepting changed data is checked against data_manifest.json, not the config
    "export",
    "paths",
    "logger",
    "callbacks.last_checkpoint",
    "callbacks.lr_monitor",  # logging only (a config.yaml may still name it; the module logs train/lr)
    "trainer.max_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    # speed paths that train the same model (to float rounding; tests/unit/training/test_speed_levers.py)
    "student.attn_implementation",
    "student.packing",
    "module.keep_freed_memory",
    "module.merged_forward",
)

# keys older config.yaml files lack -> the key whose value they had then (before data.sample_seed, a
# run's max_rows draws used its seed)
ADDED_KEYS = {"data.sample_seed": "data.seed"}


def flatten(tree: Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": leaf} (keys joined with ``sep``); lists are leaves, an empty dict has none."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{sep}{key}" if prefix else str(key), sep))
    return out


def _relative(value: Any, run_dir: str) -> Any:
    return value.replace(run_dir, "<run dir>") if isinstance(value, str) and run_dir else value


def config_changes(stored: Mapping, current: Mapping) -> list[str]:
    """``"key: old -> new"`` for every leaf that differs outside :data:`RESUME_SAFE` (sorted)."""
    old, new = flatten(stored), flatten(current)
    for key, was in ADDED_KEYS.items():
        if key not in old and was in old and key in new:
            old[key] = old[was]
    old_dir, new_dir = str(old.get("paths.output_dir", "")), str(new.get("paths.output_dir", ""))
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if any(key == safe or key.startswith(safe + ".") for safe in RESUME_SAFE):
            continue
        a, b = _relative(old.get(key, "<absent>"), old_dir), _relative(new.get(key, "<absent>"), new_dir)
        if a != b:
            changes.append(f"{key}: {a!r} -> {b!r}")
    return changes


def current_targets(tree: Any) -> Any:
    """``tree`` with every ``_target_`` that names a module of the flat layout
    (:data:`FLAT_LAYOUT_MODULES`) rewritten to the module's path today; other values unchanged."""
    if isinstance(tree, Mapping):
        out = {key: current_targets(value) for key, value in tree.items()}
        target = out.get("_target_")
        if isinstance(target, str):
            module, _, name = target.rpartition(".")
            if module in FLAT_LAYOUT_MODULES:
                out["_target_"] = f"{FLAT_LAYOUT_MODULES[module]}.{name}"
        return out
    if isinstance(tree, list):
        return [current_targets(value) for value in tree]
    return tree


def check_same_run(cfg: DictConfig, run_dir: Path) -> None:
    """Raise if ``run_dir/config.yaml`` holds another config than ``cfg`` (see the module docstring)."""
    saved = run_dir / "config.yaml"
    if not saved.exists():
        return
    changes = config_changes(
        current_targets(OmegaConf.to_container(OmegaConf.load(saved), resolve=False)),
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


EXPORT_KEYS = ("enabled", "rope_theta", "max_seq_length", "license")  # license: the card's (jina5.model.card)


def export_settings(export: bool | Mapping | None) -> dict | None:
    """The post-fit export's settings from the config's ``export`` (a mapping of :data:`EXPORT_KEYS`, or a
    bare bool: ``export=false`` on the command line), or None when nothing is exported."""
    if export is None or isinstance(export, bool):
        return {"rope_theta": None, "max_seq_length": None} if export else None
    unknown = sorted(set(export) - set(EXPORT_KEYS))
    if unknown:
        raise ValueError(f"export: unknown keys {unknown}; known: {list(EXPORT_KEYS)}")
    if not export.get("enabled", True):
        return None
    return {"rope_theta": export.get("rope_theta"), "max_seq_length": export.get("max_seq_length")}
