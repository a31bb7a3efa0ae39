"""Reading configs in the evaluation rooms: OmegaConf nodes as plain Python, and required keys.

Every evaluation setting has its value in ``conf/eval/default.yaml`` and nowhere else: Python
reads a key with :func:`require`, which names the missing key instead of falling back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def plain(cfg: Any) -> Any:
    """OmegaConf nodes -> plain Python containers (resolved); anything else unchanged."""
    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def require(cfg: Mapping[str, Any], key: str, where: str = "eval") -> Any:
    """``cfg[key]``; a missing key raises ValueError naming ``<where>.<key>``."""
    if key not in cfg:
        raise ValueError(f"{where}.{key} is missing: conf/eval/default.yaml sets every evaluation key")
    return cfg[key]
