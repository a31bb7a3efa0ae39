"""The Hydra config tree, shipped in the wheel as the package ``jina5.conf`` (setuptools ``package-dir``
maps this top-level folder to it), and how to compose it.

A package, because a console script (``jina5-train``) makes Hydra look the configs up as
``pkg://jina5.conf``, and Hydra takes a package for a config source only when it has an ``__init__.py``.

The resolvers the configs use are registered on import of this package:
- ``${chosen_experiment:<default>}``: the experiment config chosen (``experiment=loss_ablation/nce`` ->
  ``loss_ablation/nce``), else ``<default>``; names a run (``experiment_name``);
- ``${lightning_precision:${precision},<device type>}``: the trainer's precision from the top-level
  ``precision`` policy (``jina5.model.precision``; conf/trainer/*).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from jina5.model.precision import lightning_precision

CONF_DIR = Path(__file__).resolve().parent


def chosen_experiment(default: str, *, _root_: DictConfig) -> str:
    """``${chosen_experiment:<default>}``: the experiment config chosen for this composition (its path
    under conf/experiment), else ``default``.

    Read from the config's own ``hydra`` node (the compose API with ``return_hydra_config=True``),
    else from the running Hydra app (``@hydra.main`` hands the task its config without that node).
    """
    choices = OmegaConf.select(_root_, "hydra.runtime.choices", default=None)
    if choices is None:
        if not HydraConfig.initialized():
            raise ValueError(
                "experiment_name: no Hydra runtime to read the chosen experiment from; compose the "
                "config with jina5.conf.compose (return_hydra_config=True) or set experiment_name"
            )
        choices = HydraConfig.get().runtime.choices
    return choices.get("experiment") or default


OmegaConf.register_new_resolver("chosen_experiment", chosen_experiment, replace=True)
OmegaConf.register_new_resolver("lightning_precision", lightning_precision, replace=True)


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The real config tree (conf/``config_name``.yaml) composed with ``overrides``, with Hydra's
    runtime node kept (``cfg.hydra``), so ``experiment_name`` and the run directory resolve."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
