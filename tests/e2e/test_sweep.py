"""The ablation pipeline end to end at toy size: multirun training, evaluation, tables, rerun skips; the
stage-2 sweep's plan (commands, evaluations, table) with training and evaluation faked."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import REGIME_KEYS, TOY, TOY_EVAL, write_fake_run
from jina5.conf import compose
from omegaconf import OmegaConf

from jina5.eval.machine import describe, machine
from jina5.eval.store import ResultsStore, new_run_id

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
import sweep  # noqa: E402

from jina5.report.sweep_spec import load_sweeps, sweep_rows  # noqa: E402


def test_default_sweep_trains_evaluates_tabulates_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JINA5_ROOT", str(tmp_path))
    results, out = tmp_path / "results.jsonl", tmp_path / "ablation"
    argv = ["default", "--results", str(results), "--out", str(out), *TOY_EVAL, *TOY]
    sweep.main(argv)
    printed = capsys.readouterr().out
    for phase in ("[1/4]", "[2/4] training 3 experiment(s) x 3 seed(s)", "[3/4]", "[4/4]", "per-phase time:"):
        assert phase in printed
    assert f"machine: {describe(machine())}" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["regimes"]) == {
        "teacher",
        "untrained_student",
        "pure_distill",
        "pure_contrastive",
        "combined",
    }
    reference = summary["intervals"]["reference"]
    assert "hierarchical bootstrap over seeds and test items" in summary["intervals"]["method"]
    for regime in ("pure_distill", "pure_contrastive", "combined"):
        values = summary["regimes"][regime]
        assert values["seeds"] == 3
        for key in REGIME_KEYS:
            assert values[key] is not None, (regime, key)
            assert values[f"{key}_std"] is not None and values[f"{key}_std"] >= 0, (regime, key)
        if regime != reference:
            got = summary["intervals"]["rows"][regime]["float/overall"]
            assert got["low"] <= got["delta"] <= got["high"] and got["verdict"] in ("better", "worse", "tie")
        for seed in range(3):
            assert (tmp_path / "outputs" / "runs" / f"{regime}-seed{seed}" / "done.json").exists()
    assert summary["regimes"]["teacher"]["seeds"] == 1
    assert summary["machines"] == [machine()]
    lines = results.read_text().splitlines()
    assert any(json.loads(line)["task"] == "dev_curve" for line in lines)

    # a rerun skips the finished runs (no new checkpoints) and rebuilds the same tables
    ckpt = tmp_path / "outputs" / "runs" / "combined-seed0" / "checkpoints" / "last.ckpt"
    stamp = ckpt.stat().st_mtime_ns
    sweep.main(argv)
    assert ckpt.stat().st_mtime_ns == stamp
    again = json.loads((out / "summary.json").read_text())
    assert again["regimes"]["combined"]["float/overall"] == summary["regimes"]["combined"]["float/overall"]


def test_one_multirun_when_no_experiment_has_its_own_overrides():
    rows = sweep_rows(load_sweeps()["default"])
    commands = sweep.training_commands(rows, {}, [0, 1], ["a=1"], ["b=2"])
    assert commands == [
        [
            sys.executable,
            "-m",
            "jina5.train",
            "-m",
            "experiment=ablation/pure_distill,ablation/pure_contrastive,ablation/combined",
            "seed=0,1",
            "a=1",
            "b=2",
        ]
    ]


def test_a_grid_sweep_runs_one_multirun_per_value_each_in_its_own_run_dir():
    rows = sweep_rows(load_sweeps()["lr"])
    assert [r.label for r in rows[:3]] == [
        "pure_distill-lr1e-5",
        "pure_distill-lr3e-5",
        "pure_distill-lr1e-4",
    ]
    commands = sweep.training_commands(rows, {}, [0], [], [])
    assert len(commands) == 4  # one per lr, each over the three regimes
    assert commands[0][4:] == [
        "experiment=ablation/pure_distill,ablation/pure_contrastive,ablation/combined",
        "seed=0",
        "optimizer.lr=1e-5",
        "run_name=${experiment_name}-lr1e-5-seed${seed}",
    ]
    cfg = compose([f"experiment={rows[5].experiment}", *rows[5].overrides, "seed=2"])
    assert (cfg.run_name, cfg.optimizer.lr) == ("pure_contrastive-lr3e-5-seed2", 3e-5)


def test_budget_overrides_follow_steps_and_scale_each_experiments_lr():
    retrieval = compose(["experiment=adapter/retrieval"])  # lr 2e-5, averages
    clustering = compose(["experiment=adapter/clustering"])  # lr 1e-5
    assert sweep.budget_overrides(retrieval, 60, 10.0) == [
        "trainer.max_steps=60",
        "trainer.val_check_interval=60",
        "scheduler.warmup_steps=6",
        "++adapter.average_with=30",
        "optimizer.lr=0.0002",
    ]
    assert sweep.budget_overrides(clustering, 250, None) == [
        "trainer.max_steps=250",
        "trainer.val_check_interval=100",
        "scheduler.warmup_steps=25",
    ]
    assert sweep.budget_overrides(clustering, None, 2.0) == ["optimizer.lr=2e-05"]
    assert sweep.budget_overrides(clustering, None, None) == []


def test_stage2_sweep_trains_from_stage1_and_compares_the_combined_adapters(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JINA5_ROOT", str(tmp_path))
    stage1 = tmp_path / "outputs" / "runs" / "pure_distill-seed0"
    runs = tmp_path / "outputs" / "stage2" / "pure_distill-seed0" / "runs"
    tasks = ("retrieval", "text_matching", "clustering", "classification")
    for task in tasks:  # what the training subprocesses would leave
        (runs / f"adapter_{task}-seed0").mkdir(parents=True)
        (runs / f"adapter_{task}-seed0" / "done.json").write_text(
            json.dumps({"train_seconds": 5.0, "steps": 8})
        )
    results, out = tmp_path / "results.jsonl", tmp_path / "stage2"
    commands, evaluated, combined = [], [], []
    monkeypatch.setattr(sweep, "BUNDLED_MODELS", [])
    monkeypatch.setattr(sweep, "subprocess", SimpleNamespace(run=lambda cmd, check: commands.append(cmd)))
    monkeypatch.setattr("jina5.export.combine_adapters", lambda r, o: combined.append((list(r), o)))

    def fake_evaluate(model, overrides, store):
        evaluated.append((model, list(overrides)))
        label = next(o.split("=", 1)[1] for o in overrides if o.startswith("label="))
        write_fake_run(ResultsStore(store), label, 0, {"stage1": 0.52, "stage2_adapters": 0.55}[label])
        return {"run": {"experiment": label}}

    monkeypatch.setattr(sweep, "evaluate_model", fake_evaluate)
    with pytest.raises(SystemExit):  # --stage1 is for stage-2 sweeps only
        sweep.main(["default", "--stage1", str(stage1), "--results", str(results)])
    sweep.main(
        [
            "stage2",
            "--stage1",
            str(stage1),
            "--steps",
            "8",
            "--lr-scale",
            "10",
            "--results",
            str(results),
            "--out",
            str(out),
            "--eval",
            "eval=smoke",
            "trainer.accelerator=cpu",
        ]
    )

    # one multirun per adapter (their lrs differ), each from the stage-1 run, into its own output root
    assert [c[4] for c in commands] == [f"experiment=adapter/{t}" for t in tasks]
    lrs = {"retrieval": 2e-4, "text_matching": 5e-4, "clustering": 1e-4, "classification": 4e-3}
    for task, cmd in zip(tasks, commands, strict=True):
        assert cmd[5:] == [
            "seed=0",
            "trainer.enable_progress_bar=false",
            f"init_from={stage1}",
            f"paths.output_root={runs.parent}",
            "trainer.max_steps=8",
            "trainer.val_check_interval=8",
            "scheduler.warmup_steps=1",
            *(["++adapter.average_with=4"] if task == "retrieval" else []),
            f"optimizer.lr={lrs[task]:g}",
            "trainer.accelerator=cpu",
        ]
    # the stage-1 run and the four adapters combined into one encoder, each evaluated once
    assert combined == [([runs / f"adapter_{t}-seed0" for t in tasks], runs.parent / "stage2_adapters-seed0")]
    float_only = ["eval.dims=[]", "eval.precisions=[float32]", "eval.variant=float32_full_dim", "eval=smoke"]
    assert evaluated == [
        (str(stage1), [*float_only, "label=stage1"]),
        (str(runs.parent / "stage2_adapters-seed0"), [*float_only, "label=stage2_adapters", "seed=0"]),
    ]
    # the adapter runs' wall times go to the store under their own labels
    stored = ResultsStore(results).read()
    seconds = stored[stored["metric"] == "train_seconds"]
    assert sorted(seconds["experiment"]) == sorted(f"adapter_{t}" for t in tasks)
    assert set(seconds["value"]) == {5.0}
    md = (out / "summary.md").read_text()
    assert "| task type | stage1 | stage2_adapters | delta |" in md
    assert "| sts | 55.00 | 58.00 | +3.00 |" in md  # sts is task 3: base + 0.03
    assert "[2/4] training 4 experiment(s) x 1 seed(s) as 4 Hydra multiruns" in capsys.readouterr().out


def test_table5_and_table6_runs_are_adapters_on_the_shared_stage1_base(tmp_path, monkeypatch):
    """Trained for real at toy size (evaluation faked): the stage-1 base once, then every Table 5 and Table 6
    row a retrieval LoRA adapter whose saved config.yaml starts from that base; table6 reuses table5's."""
    monkeypatch.setenv("JINA5_ROOT", str(tmp_path))
    monkeypatch.setattr(sweep, "BUNDLED_MODELS", [])
    evaluated = []

    def fake_evaluate(model, overrides, store):
        label = next((o.split("=", 1)[1] for o in overrides if o.startswith("label=")), model)
        evaluated.append(label)
        return {"run": {"run_id": new_run_id("fake"), "experiment": label, "seed": 0, "model": model}}

    monkeypatch.setattr(sweep, "evaluate_model", fake_evaluate)
    toy = [*TOY, "trainer.val_check_interval=1"]
    base = tmp_path / "outputs" / "runs" / "stage1_base-seed0"
    sweep.main(
        [
            "table5",
            "--steps",
            "2",
            "--results",
            str(tmp_path / "r.jsonl"),
            "--out",
            str(tmp_path / "t5"),
            *toy,
        ]
    )
    stamp = (base / "done.json").stat().st_mtime_ns
    sweep.main(
        [
            "table6",
            "--steps",
            "2",
            "--results",
            str(tmp_path / "r.jsonl"),
            "--out",
            str(tmp_path / "t6"),
            *toy,
        ]
    )
    assert (base / "done.json").stat().st_mtime_ns == stamp  # trained once: table6 found it done
    stage2 = tmp_path / "outputs" / "stage2" / "stage1_base-seed0" / "runs"
    rows = {*load_sweeps()["table5"]["experiments"], *load_sweeps()["table6"]["experiments"]}
    assert len(rows) == 7
    for experiment in rows:
        run = stage2 / f"{compose([f'experiment={experiment}']).experiment_name}-seed0"
        saved = OmegaConf.load(run / "config.yaml")
        assert saved.init_from == str(base), experiment
        assert saved.adapter.task == "retrieval"
        assert (run / "encoder" / "adapters" / "retrieval").is_dir(), experiment
    assert evaluated.count("stage1") == 2  # the base is each table's reference row
