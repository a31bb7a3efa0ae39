"""Checks of a composed training config that need no model, data or run directory: made first by
``jina5.train.build`` and ``python -m jina5.teacher``, so a bad value fails before anything loads.

- the student's and the teacher's ``max_length`` and the teacher's ``batch_size``, where set, are positive
  integers;
- no ``+data.datasets.<name>=null`` override: Hydra's suggestion for a mistyped name
  (``data.datasets.nwes=null`` fails with "To append to your config use +data.datasets.nwes=null"), which
  adds a null entry the config did not have and drops nothing: ``news`` would silently stay in the mix.
  A ``+`` adds only keys that are not there (Hydra refuses it on an existing one), so every such override
  names no dataset; the error lists the ones the mix has. (``++`` may override an existing dataset, so
  it is taken at its word.)
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from jina5.model.settings import positive_int


def check_run_config(cfg: DictConfig, overrides: Sequence[str] | None = None) -> None:
    """Raise ValueError naming the key of the first bad value (module docstring). ``overrides``: the
    command line's (default: the running Hydra app's, none outside one)."""
    settings = [("student.max_length", "tokens per text")]
    if cfg.get("teacher") and cfg.get("use_teacher", True):
        settings += [
            ("teacher.max_length", "tokens per text"),
            ("teacher.batch_size", "texts per forward pass"),
        ]
    for key, meaning in settings:
        if (value := OmegaConf.select(cfg, key)) is not None:  # absent: the class's default
            positive_int(value, key, meaning)
    if overrides is None:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    datasets = cfg.get("data", {}).get("datasets") or {}
    kept = [name for name, entry in datasets.items() if entry is not None]
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group.split(".")
        if (
            override.is_add()
            and key[:2] == ["data", "datasets"]
            and len(key) == 3
            and override.value() is None
        ):
            raise ValueError(
                f"{override.input_line}: no dataset {key[2]!r} in the mix, so this drops nothing (a '+' "
                f"adds a key the config does not have); the mix's datasets: {', '.join(kept)}. Drop one "
                "with data.datasets.<name>=null, without the '+'"
            )
