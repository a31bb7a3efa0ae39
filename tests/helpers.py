"""Test helpers: compose the real Hydra config tree, and training configs on toy models."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from jina5.run_config import CONF_DIR, compose

__all__ = ["CONF_DIR", "SMALL_DATA", "TINY", "TINY_TEACHER", "LossRecorder", "compose", "run_cfg"]

SMALL_DATA = [
    "data.datasets=[{name: bbc, batch_size: 8, query_max_length: 16, document_max_length: 32, max_rows: 64},"
    "{name: lee_background, batch_size: 4, query_max_length: 16, document_max_length: 32, unlabeled: true, max_rows: 32}]",
    "data.dev_datasets=[bbc]",
    "data.dev_pairs=16",
]
TINY = {  # toy students (32-d)
    "bert": ["student.source=tiny:bert"],
    "qwen3": ["student=qwen3_0_6b", "student.source=tiny:qwen3", "student.max_length=48"],
    "eurobert": ["student=eurobert_210m", "student.source=tiny:eurobert", "student.max_length=48"],
}
TINY_TEACHER = ["teacher.source=tiny:mpnet", "objective.matryoshka.dims=[8,16,32]"]  # 32-d teacher


def run_cfg(tmp_path: Path, *overrides: str, student: str = "bert", small_data: bool = True) -> DictConfig:
    """A composed training config on toy models in ``tmp_path``, as ``python -m jina5.train`` would hand
    it to ``train`` (Hydra's runtime set, its node removed); ``small_data=False`` keeps the experiment's
    own data config."""
    cfg = compose(
        [
            *TINY[student],
            *TINY_TEACHER,
            *(SMALL_DATA if small_data else []),
            f"paths.output_root={tmp_path}",
            "trainer.enable_progress_bar=false",
            *overrides,
        ]
    )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "runs" / cfg.run_name)
        del cfg.hydra
    return cfg


class LossRecorder(L.Callback):
    """The training loss of every step: {global step after the step: loss}."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step] = float(outputs["loss"])
