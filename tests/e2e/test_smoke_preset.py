"""``debug=smoke`` (conf/debug/smoke.yaml): the real pipeline in about a minute, for any experiment
and data config, in its own run directory; and the shipped configs without it are as they were."""

from __future__ import annotations

import lightning as L
import pytest
from helpers import CONF_DIR, compose, run_cfg

from jina5.train import train


def options(group: str) -> list[str]:
    """Every config of ``group``, sub-folders included (``ablation/combined``)."""
    root = CONF_DIR / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


EXPERIMENTS = options("experiment")
DATA_CONFIGS = options("data")


def test_the_experiments_and_data_configs_are_listed():
    assert "ablation/combined" in EXPERIMENTS and len(EXPERIMENTS) >= 19
    assert {"stage1", "stage1_distill", "adapter_classification"} <= set(DATA_CONFIGS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_smoke_composes_with_every_experiment(experiment):
    cfg = compose([f"experiment={experiment}", "debug=smoke"])
    assert (cfg.data.max_rows_cap, cfg.data.batch_size_cap, cfg.data.dev_pairs) == (16, 8, 16)
    assert (cfg.trainer.max_steps, cfg.trainer.val_check_interval) == (10, 5)
    assert cfg.run_name == f"{cfg.experiment_name}-smoke-seed0"  # never a real run's directory
    assert (cfg.skip_done, cfg.ckpt_path) == (False, None)


@pytest.mark.parametrize("data", DATA_CONFIGS)
def test_every_data_config_has_the_row_cap_the_smoke_preset_sets(data):
    plain = compose([f"data={data}"])
    assert plain.data.max_rows_cap is None  # a key of every data config (stage1.yaml's, or its own)
    assert "batch_size_cap" not in plain.data  # only the preset adds it: real runs' config.yaml unchanged
    assert compose([f"data={data}", "debug=smoke"]).data.max_rows_cap == 16


class Observed(L.Callback):
    """The mix the run trained on, and the steps it ran dev checks at."""

    def __init__(self) -> None:
        self.tables: dict[str, tuple[int, int]] = {}
        self.dev_checks: list[int] = []
        self.steps = 0

    def on_fit_start(self, trainer, module) -> None:
        dm = trainer.datamodule
        self.tables = {t.spec.name: (len(t), t.spec.batch_size) for t in dm.tables}

    def on_validation_end(self, trainer, module) -> None:
        self.dev_checks.append(trainer.global_step)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps += 1


def test_smoke_trains_tiny_models_in_ten_steps(tmp_path):
    """The preset on the tests' small mix (bbc: 64 rows, batch 8; lee_background: 32 rows, batch 4):
    rows capped at 16, 10 steps, dev checks at 5 and 10, its own run directory."""
    cfg = run_cfg(tmp_path, "debug=smoke")
    observed = Observed()
    summary = train(cfg, callbacks=[observed])
    assert summary["steps"] == 10 and observed.steps == 10
    assert observed.dev_checks == [5, 10]
    assert observed.tables == {"bbc": (16, 8), "lee_background": (16, 4)}
    assert cfg.paths.output_dir.endswith("runs/default-smoke-seed0")


@pytest.mark.slow  # parses and splits every bundled corpus: minutes on 2 cores
def test_smoke_trains_the_real_mix_of_an_experiment_with_tiny_models(tmp_path):
    """ablation/combined's own data (stage1_distill: pair and texts-only datasets, batches up to 64)
    under the preset: every table capped at 16 rows and batch 8, 10 steps, dev checks at 5 and 10."""
    cfg = run_cfg(tmp_path, "experiment=ablation/combined", "debug=smoke", small_data=False)
    observed = Observed()
    summary = train(cfg, callbacks=[observed])
    assert summary["steps"] == 10 and observed.steps == 10
    assert observed.dev_checks == [5, 10]
    assert len(observed.tables) == 16  # 7 pair datasets + 9 texts-only ones
    assert all(rows == 16 and batch <= 8 for rows, batch in observed.tables.values()), observed.tables
    assert cfg.paths.output_dir.endswith("runs/combined-smoke-seed0")
