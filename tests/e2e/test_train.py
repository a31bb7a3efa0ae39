"""Training core: every experiment composes (to its pinned name) and runs; DDP on CPU; resume == unbroken
run; NaN stops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import CONF_DIR, LossRecorder, compose, run_cfg
from omegaconf import OmegaConf

from jina5.runs.curves import read_curves
from jina5.train import build, train
from jina5.training.objective import find_distillation
from jina5.training.schedule import lr_lambda

EXPERIMENTS = sorted(
    str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
    for p in (CONF_DIR / "experiment").rglob("*.yaml")
)
# experiment config -> experiment_name: the run dir (<name>-seed<seed>) and the results store's key
EXPERIMENT_NAMES = {
    None: "default",
    "ablation/combined": "combined",
    "ablation/pure_contrastive": "pure_contrastive",
    "ablation/pure_distill": "pure_distill",
    "adapter/classification": "adapter_classification",
    "adapter/clustering": "adapter_clustering",
    "adapter/retrieval": "adapter_retrieval",
    "adapter/text_matching": "adapter_text_matching",
    "binary/binary_aware": "binary/binary_aware",
    "loss_ablation/distill": "loss_ablation/distill",
    "loss_ablation/distill_gor": "loss_ablation/distill_gor",
    "loss_ablation/nce": "loss_ablation/nce",
    "loss_ablation/nce_distill": "loss_ablation/nce_distill",
    "loss_ablation/nce_distill_gor": "loss_ablation/nce_distill_gor",
    "loss_ablation/nce_gor": "loss_ablation/nce_gor",
    "objective_curve/score_distill": "objective_curve/score_distill",
    "paper/adapter_classification": "paper_small_adapter_classification",
    "paper/adapter_clustering": "paper_small_adapter_clustering",
    "paper/adapter_retrieval": "paper_small_adapter_retrieval",
    "paper/adapter_text_matching": "paper_small_adapter_text_matching",
    "paper/long_context": "paper_small_long_context",
    "paper/stage1_nano": "paper_nano_stage1",
    "paper/stage1_small": "paper_small_stage1",
    "stage1/base": "stage1_base",
    "truncation/combined_matryoshka": "truncation/combined_matryoshka",
    "truncation/pure_contrastive_matryoshka": "truncation/pure_contrastive_matryoshka",
    "truncation/pure_distill_matryoshka": "truncation/pure_distill_matryoshka",
}


def test_experiment_names_and_run_dirs_are_pinned():
    assert sorted(e for e in EXPERIMENT_NAMES if e) == EXPERIMENTS  # a new experiment gets pinned here
    for experiment, name in EXPERIMENT_NAMES.items():
        cfg = compose([f"experiment={experiment}", "seed=3"] if experiment else ["seed=3"])
        assert (cfg.experiment_name, cfg.run_name) == (name, f"{name}-seed3"), experiment
        assert cfg.hydra.run.dir == f"{cfg.paths.output_root}/runs/{name}-seed3"
        assert cfg.hydra.sweep.subdir == f"{name}-seed3"


def test_experiment_name_comes_from_the_config_not_a_stale_hydra_runtime(tmp_path):
    run_cfg(tmp_path, "experiment=ablation/combined")  # sets Hydra's runtime (as jina5.train's does)
    assert compose(["experiment=loss_ablation/nce"]).experiment_name == "loss_ablation/nce"


@pytest.mark.parametrize("regime", ["combined", "pure_contrastive", "pure_distill"])
def test_truncation_experiments_are_their_ablation_with_matryoshka(regime):
    def resolved(experiment: str, *overrides: str) -> dict:
        cfg = compose([f"experiment={experiment}", *overrides])
        return {
            k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("objective", "optimizer", "trainer")
        }

    truncation = compose([f"experiment=truncation/{regime}_matryoshka"])
    assert truncation.experiment_name == f"truncation/{regime}_matryoshka"
    assert truncation.objective.matryoshka.enabled
    assert resolved(f"truncation/{regime}_matryoshka") == resolved(
        f"ablation/{regime}", "objective.matryoshka.enabled=true"
    )


# paper/*: GPUs, hub data and RoPE students; their tiny runs on local stand-ins: tests/e2e/test_paper_configs.py
@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if not e.startswith("paper/")])
def test_every_experiment_runs_fast_dev_run(tmp_path, experiment):
    cfg = run_cfg(tmp_path, f"experiment={experiment}", "+trainer.fast_dev_run=2")
    summary = train(cfg)
    assert summary["steps"] == 2
    run_dir = Path(cfg.paths.output_dir)
    assert (run_dir / "encoder" / "jina5_encoder.json").exists()
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.experiment_name == cfg.experiment_name
    card = json.loads((run_dir / "encoder" / "jina5_card.json").read_text())  # the model card's facts
    mrl = cfg.objective.matryoshka
    assert (card["experiment"], card["steps"]) == (cfg.experiment_name, 2)
    assert card["matryoshka_dims"] == (list(mrl.dims) if mrl.enabled else None)
    assert card["objective"] == {k: float(v) for k, v in cfg.objective.weights.items()}


@pytest.mark.parametrize("student", ["qwen3", "eurobert"])
def test_paper_architectures_at_toy_size(tmp_path, student):
    cfg = run_cfg(tmp_path, "experiment=ablation/combined", "+trainer.fast_dev_run=2", student=student)
    assert train(cfg)["steps"] == 2


def test_matryoshka_and_binary_aware_switches_change_the_loss_by_the_hand_computed_amount(tmp_path):
    """Same models and batch, each switch on vs off: the objective's total moves by exactly the terms
    the switch adds (computed here with the unwrapped losses)."""
    switches = {
        "off": [],
        "matryoshka": ["objective.matryoshka.enabled=true"],  # dims [8, 16, 32] (TINY_TEACHER)
        "binary": ["objective.binary_aware=[infonce,gor]"],
    }
    modules = {}
    for name, extra in switches.items():
        modules[name], datamodule, _ = build(run_cfg(tmp_path, "experiment=ablation/combined", *extra))
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    off = modules["off"].eval()
    losses, weights = off.objective.losses, off.objective.weights  # distill 2, infonce 1, gor 1

    def term(name: str, eb) -> float:
        return weights[name] * float(losses[name](eb))

    def truncated(eb, d: int):
        return eb.map_student(lambda z: torch.nn.functional.normalize(z[..., :d], dim=-1))

    def binarised(eb):
        return eb.map_student(lambda z: torch.sign(z) / z.shape[-1] ** 0.5)

    with torch.no_grad():
        eb = off.embedding_batch(batch)
        total = {name: float(module.objective(eb)[0]) for name, module in modules.items()}
        plain = {
            d: sum(term(n, truncated(eb, d)) for n in ("distill", "infonce", "gor")) for d in (8, 16, 32)
        }
        binary_change = sum(term(n, binarised(eb)) - term(n, eb) for n in ("infonce", "gor"))
    for module in modules.values():  # psi is the same in all three (identity: 32-d student and teacher)
        assert torch.equal(find_distillation(module.objective).proj.weight, losses["distill"].proj.weight)
    assert total["off"] == pytest.approx(plain[32], rel=1e-6)
    # Matryoshka: the full-dim term plus one term per smaller dim
    assert total["matryoshka"] - total["off"] == pytest.approx(plain[8] + plain[16], rel=1e-5)
    assert plain[8] + plain[16] > 0.5 * total["off"]
    # binary-aware: InfoNCE and GOR on sign(z)/sqrt(D), distillation untouched
    assert total["binary"] - total["off"] == pytest.approx(binary_change, rel=1e-5, abs=1e-6)
    assert abs(binary_change) > 1e-2


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
    # the resumed run's curve record still holds the curve before the interruption, each step once
    logged = [read_curves(tmp_path / run / "runs" / "combined-seed0") for run in ("a", "b")]
    for name in ("train/loss", "val/ndcg@10"):
        a, b = (df[df["name"] == name].set_index("step")["value"] for df in logged)
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


def test_a_loss_needing_the_teacher_dim_without_a_teacher_is_named(tmp_path):
    cfg = run_cfg(tmp_path, "experiment=ablation/combined", "use_teacher=false")
    with pytest.raises(ValueError, match=r"objective\.losses\.distill .* needs the teacher's dim"):
        build(cfg)


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
    from jina5.runs.config import config_changes

    def saved(root: str, max_steps: int, skip_done: bool) -> dict:
        run_dir = f"{root}/runs/x"
        return {
            "paths": {"output_dir": run_dir},
            "trainer": {"max_steps": max_steps, "default_root_dir": run_dir},
            "optimizer": {"lr": 1e-4},
            "logger": {"save_dir": run_dir},
            "skip_done": skip_done,
        }

    old, new = saved("/a", 80, True), saved("/b", 300, False)
    assert config_changes(old, new) == []
    new["optimizer"]["lr"] = 2e-4
    new["objective"] = {"weights": {"gor": 1.0}}
    assert config_changes(old, new) == [
        "objective.weights.gor: '<absent>' -> 1.0",
        "optimizer.lr: 0.0001 -> 0.0002",
    ]


def test_a_config_written_before_sample_seed_reads_it_as_its_seed():
    """Before ``data.sample_seed``, a run's ``max_rows`` draws used its seed: a seed-0 run is the same run
    under today's default (sample 0), a seed-1 run drew another sample and is not."""
    from jina5.runs.config import config_changes

    def old(seed: int) -> dict:
        return {"seed": seed, "data": {"seed": seed}}

    def new(seed: int, sample_seed: int) -> dict:
        return {"seed": seed, "data": {"seed": seed, "sample_seed": sample_seed}}

    assert config_changes(old(0), new(0, 0)) == []
    assert config_changes(old(1), new(1, 0)) == ["data.sample_seed: 1 -> 0"]
    assert config_changes(old(1), new(1, 1)) == []
    assert config_changes(new(1, 0), new(1, 1)) == ["data.sample_seed: 0 -> 1"]
