"""Training core: every experiment composes and runs; DDP on CPU; resume == unbroken run; NaN stops."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from helpers import CONF_DIR, compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from jina5.module import lr_lambda
from jina5.train import train

EXPERIMENTS = sorted(
    str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
    for p in (CONF_DIR / "experiment").rglob("*.yaml")
)
SMALL_DATA = [
    "~data.datasets",
    "+data.datasets={bbc: {batch_size: 8, query_max_length: 16, document_max_length: 32, max_rows: 64},"
    "lee_background: {batch_size: 4, query_max_length: 16, document_max_length: 32, unlabeled: true, max_rows: 32}}",
    "data.dev_datasets=[bbc]",
    "data.dev_pairs=16",
]
TINY = {
    "bert": ["student.source=tiny:bert", "student_dim=32"],
    "qwen3": ["student=qwen3_0_6b", "student.source=tiny:qwen3", "student_dim=32", "student.max_length=48"],
    "eurobert": [
        "student=eurobert_210m",
        "student.source=tiny:eurobert",
        "student_dim=32",
        "student.max_length=48",
    ],
}
TINY_TEACHER = ["teacher.source=tiny:mpnet", "teacher_dim=32", "objective.matryoshka.dims=[8,16,32]"]


def run_cfg(tmp_path: Path, *overrides: str, student: str = "bert", small_data: bool = True):
    """A composed training config on toy models in ``tmp_path``; ``small_data=False`` keeps the
    experiment's own data config."""
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
    def __init__(self):
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = float(outputs["loss"])


def test_experiment_list_is_complete():
    assert {"ablation/pure_distill", "ablation/pure_contrastive", "ablation/combined"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_fast_dev_run(tmp_path, experiment):
    cfg = run_cfg(tmp_path, f"experiment={experiment}", "+trainer.fast_dev_run=2")
    summary = train(cfg)
    assert summary["steps"] == 2
    run_dir = Path(cfg.paths.output_dir)
    assert (run_dir / "encoder" / "jina5_encoder.json").exists()
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.experiment_name == cfg.experiment_name


@pytest.mark.parametrize("student", ["qwen3", "eurobert"])
def test_paper_architectures_at_toy_size(tmp_path, student):
    cfg = run_cfg(tmp_path, "experiment=ablation/combined", "+trainer.fast_dev_run=2", student=student)
    assert train(cfg)["steps"] == 2


def test_matryoshka_and_binary_aware_switches(tmp_path):
    cfg = run_cfg(
        tmp_path,
        "experiment=ablation/combined",
        "+trainer.fast_dev_run=1",
        "objective.matryoshka.enabled=true",
        "objective.matryoshka.dims=[8,16,32]",
        "objective.binary_aware=[infonce,gor]",
    )
    assert train(cfg)["steps"] == 1


def test_zero_weight_losses_are_logged(tmp_path):
    cfg = run_cfg(
        tmp_path,
        "experiment=ablation/pure_distill",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=2",
    )
    summary = train(cfg)
    for name in (
        "train/distill",
        "train/infonce",
        "train/gor",
        "train/score_distill",
        "val/ndcg@10",
        "val/teacher_cos",
        "val/teacher_ndcg@10",
    ):
        assert name in summary["metrics"], name


def test_done_runs_are_skipped(tmp_path):
    cfg = run_cfg(tmp_path, "trainer.max_steps=1", "trainer.val_check_interval=1")
    first = train(cfg)
    recorder = LossRecorder()
    assert train(cfg, callbacks=[recorder]) == first and not recorder.losses


def test_resume_from_last_ckpt_matches_unbroken_run(tmp_path):
    common = [
        "experiment=ablation/combined",
        "trainer.log_every_n_steps=1",
        "scheduler.total_steps=6",
        "trainer.val_check_interval=3",
        "scheduler.warmup_steps=2",
    ]
    unbroken = LossRecorder()
    train(run_cfg(tmp_path / "a", *common, "trainer.max_steps=6"), callbacks=[unbroken])
    first_half = LossRecorder()
    train(run_cfg(tmp_path / "b", *common, "trainer.max_steps=3"), callbacks=[first_half])
    second_half = LossRecorder()
    cfg = run_cfg(tmp_path / "b", *common, "trainer.max_steps=6")  # a finished run, extended
    summary = train(cfg, callbacks=[second_half])
    assert summary["steps"] == 6
    assert sorted(second_half.losses) == [4, 5, 6]
    for step in (1, 2, 3):
        assert first_half.losses[step] == pytest.approx(unbroken.losses[step], rel=1e-6)
    for step in (4, 5, 6):
        assert second_half.losses[step] == pytest.approx(unbroken.losses[step], rel=1e-5), step
    # the resumed run's metrics.csv still holds the curve before the interruption, each step once
    logged = [
        pd.read_csv(tmp_path / run / "runs" / "combined-seed0" / "logs" / "metrics.csv") for run in ("a", "b")
    ]
    for name in ("train/loss", "val/ndcg@10"):
        a, b = (df.dropna(subset=[name]).set_index("step")[name] for df in logged)
        assert b.index.tolist() == a.index.tolist() and len(a) >= (6 if name == "train/loss" else 2), name
        assert b.to_numpy() == pytest.approx(a.to_numpy(), rel=1e-5), name


def test_nan_loss_stops_naming_step_and_dataset(tmp_path, monkeypatch):
    from jina5.losses.gor import GlobalOrthogonal

    monkeypatch.setattr(GlobalOrthogonal, "forward", lambda self, batch: batch.query.sum() * float("nan"))
    cfg = run_cfg(tmp_path, "experiment=ablation/combined", "trainer.max_steps=2")
    with pytest.raises(FloatingPointError, match=r"step 0 .*dataset '(bbc|lee_background)'"):
        train(cfg)


def test_unknown_objective_key_is_named(tmp_path):
    cfg = run_cfg(tmp_path, "+objective.temprature=0.1", "trainer.max_steps=1")
    with pytest.raises(KeyError, match="temprature"):
        train(cfg)


def test_wrong_student_dim_is_named(tmp_path):
    cfg = run_cfg(tmp_path, "student_dim=64", "trainer.max_steps=1")
    with pytest.raises(ValueError, match="student_dim"):
        train(cfg)


def test_ddp_spawn_on_cpu(tmp_path):
    cfg = run_cfg(
        tmp_path,
        "trainer=ddp_cpu",
        "experiment=ablation/combined",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
    )
    summary = train(cfg)
    assert summary["steps"] == 2
    state = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 2
    assert json.loads((Path(cfg.paths.output_dir) / "done.json").read_text())["steps"] == 2


def test_lr_schedule_values():
    f = lr_lambda("cosine", warmup_steps=2, total_steps=6, min_ratio=0.1)
    assert [round(f(s), 6) for s in range(7)] == [
        0.5,
        1.0,
        1.0,
        round(0.1 + 0.9 * 0.5 * (1 + 0.7071067811865476), 6),
        0.55,
        round(0.1 + 0.9 * 0.5 * (1 - 0.7071067811865476), 6),
        0.1,
    ]
    g = lr_lambda("linear", 0, 4, 0.0)
    assert [g(s) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_projection_warm_start_fits_psi_before_step_0(tmp_path):
    def teacher_cos(n_texts: int) -> float:
        summary = train(
            run_cfg(
                tmp_path / str(n_texts),
                "experiment=ablation/pure_distill",
                "trainer.max_steps=1",
                "trainer.val_check_interval=1",
                "optimizer.lr=1e-12",
                f"module.projection_warm_start={n_texts}",
            )
        )
        return summary["metrics"]["val/teacher_cos"]

    assert teacher_cos(512) > teacher_cos(0) + 0.1


def test_rerun_with_other_settings_is_refused_not_reused(tmp_path):
    one_step = ["trainer.max_steps=1", "trainer.val_check_interval=1"]
    train(run_cfg(tmp_path, *one_step))
    with pytest.raises(ValueError, match=r"optimizer\.lr: 0\.0001 -> 0\.0003") as err:
        train(run_cfg(tmp_path, *one_step, "optimizer.lr=3e-4"))
    assert "run_name=" in str(err.value)
    # its own run_name gives it its own directory; retraining in place is allowed on request
    other = train(run_cfg(tmp_path, *one_step, "optimizer.lr=3e-4", "run_name=combined-lr3e-4-seed0"))
    assert other["run_dir"].endswith("combined-lr3e-4-seed0")
    again = train(run_cfg(tmp_path, *one_step, "optimizer.lr=3e-4", "skip_done=false", "ckpt_path=null"))
    assert again["steps"] == 1


def test_config_changes_ignores_bookkeeping_and_moved_dirs():
    from jina5.run_config import config_changes

    old = {
        "paths": {"output_dir": "/a/runs/x"},
        "trainer": {"max_steps": 80, "default_root_dir": "/a/runs/x"},
        "optimizer": {"lr": 1e-4},
        "logger": {"save_dir": "/a/runs/x"},
        "skip_done": True,
    }
    new = {
        "paths": {"output_dir": "/b/runs/x"},
        "trainer": {"max_steps": 300, "default_root_dir": "/b/runs/x"},
        "optimizer": {"lr": 1e-4},
        "logger": {"save_dir": "/b/runs/x"},
        "skip_done": False,
    }
    assert config_changes(old, new) == []
    new["optimizer"]["lr"] = 2e-4
    new["objective"] = {"weights": {"gor": 1.0}}
    assert config_changes(old, new) == [
        "objective.weights.gor: '<absent>' -> 1.0",
        "optimizer.lr: 0.0001 -> 0.0002",
    ]
