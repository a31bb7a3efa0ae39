"""Hydra launchers: the refusal of a multirun whose DDP ranks would relaunch the sweep, the SLURM
launcher config's ties to the trainer, and a 2-job sweep under submitit's local executor, evaluations
included, whose results store holds the same records as the default (in-process) evaluation's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TOY, TOY_EVAL, compose
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from jina5.eval.store import ResultsStore
from jina5.runs.multirun import SLURM_LAUNCHER, check_multirun, relaunches_command_line, world_size

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
import sweep  # noqa: E402

from jina5.report import tables  # noqa: E402
from jina5.report.sweep_spec import load_sweeps  # noqa: E402

BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


# ------------------------------------------------------------------------------ -m with multi-rank DDP


@pytest.mark.parametrize(
    ("trainer", "ranks", "relaunches"),
    [
        ({"accelerator": "cpu", "devices": 1}, 1, True),  # auto: ddp if it had several ranks
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp"}, 2, True),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}, 2, False),
        ({"accelerator": "gpu", "devices": "0,1,2", "strategy": "ddp_find_unused_parameters_true"}, 3, True),
        ({"accelerator": "gpu", "devices": [0, 1], "num_nodes": 2, "strategy": "fsdp"}, 4, True),
        (
            {
                "accelerator": "gpu",
                "devices": 8,
                "strategy": {"_target_": "jina5.training.strategies.fsdp_strategy"},
            },
            8,
            True,
        ),
        (
            {
                "devices": 2,
                "strategy": {"_target_": "lightning.pytorch.strategies.DDPStrategy", "start_method": "spawn"},
            },
            2,
            False,
        ),
        ({"accelerator": "cpu", "devices": "auto", "strategy": "ddp"}, 1, True),
    ],
)
def test_ranks_and_how_lightning_starts_them(trainer, ranks, relaunches):
    assert world_size(trainer) == ranks
    assert relaunches_command_line(trainer) == relaunches


def test_a_multirun_of_relaunching_ddp_is_refused_unless_slurm_starts_the_ranks():
    ddp = {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    for launcher in (BASIC, JOBLIB):
        with pytest.raises(
            ValueError, match=r"-m \(multirun\) with trainer.strategy=ddp on 2 ranks.*hydra/launcher=slurm"
        ):
            check_multirun(ddp, True, launcher)
    check_multirun(ddp, False, BASIC)  # one run: Lightning relaunches this command line, which is one job
    check_multirun(ddp, True, SLURM_LAUNCHER)
    check_multirun({**ddp, "strategy": "ddp_spawn"}, True, BASIC)  # ranks spawned inside the job
    check_multirun({**ddp, "devices": 1}, True, BASIC)
    multinode = compose(["trainer=ddp_multinode"]).trainer
    with pytest.raises(ValueError, match="on 16 ranks"):
        check_multirun(multinode, True, BASIC)


def test_the_training_cli_refuses_it_before_anything_is_loaded(tmp_path):
    """The student cannot be loaded (no such directory): the refusal, not that error, shows it came first."""
    env = {**os.environ, "JINA5_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "jina5.train", "-m", "trainer=ddp_cpu", "trainer.strategy=ddp", "seed=0,1"]
    proc = subprocess.run(
        [*cmd, f"student.source={tmp_path / 'no-such-model'}", "teacher.source=tiny:mpnet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    output = proc.stderr + proc.stdout
    assert (
        "-m (multirun) with trainer.strategy=ddp on 2 ranks" in output and "no such directory" not in output
    )
    assert not (
        tmp_path / "outputs" / "runs" / "default-seed0" / "config.yaml"
    ).exists()  # Hydra made the dir


# ------------------------------------------------------------------------------ launcher configs


def test_the_slurm_launcher_starts_one_task_per_rank():
    cfg = compose(["trainer=ddp_multinode", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    HydraConfig.instance().set_config(cfg)
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    p = launcher.params
    assert (p["nodes"], p["tasks_per_node"], p["gpus_per_node"], p["partition"]) == (2, 8, 8, "gpu")
    assert p["timeout_min"] == 4320
    evaluation = compose(["hydra/launcher=slurm"], "eval").hydra.launcher  # no trainer: one task, one GPU
    assert (evaluation.nodes, evaluation.tasks_per_node, evaluation.gpus_per_node) == (1, 1, 1)
    for name, target in (("submitit_local", "LocalLauncher"), ("joblib", "JoblibLauncher")):
        for app in ("train", "eval"):
            assert compose([f"hydra/launcher={name}"], app).hydra.launcher._target_.endswith(target)


def test_sweep_passes_its_launcher_to_trainings_and_evaluations(tmp_path, monkeypatch):
    """The commands alone (training and evaluation faked): hydra/launcher and its hydra.launcher.*
    overrides go to the training multirun and to the evaluation multirun."""
    commands = []
    monkeypatch.setattr(
        sweep, "subprocess", type("P", (), {"run": staticmethod(lambda c, check: commands.append(c))})
    )
    evaluations = sweep.Evaluations(
        str(tmp_path / "r.jsonl"), sweep.launcher_overrides("joblib", ["a=1", "hydra.launcher.n_jobs=2"])
    )
    evaluations.add("teacher", ["eval=smoke"])
    evaluations.add("/runs/x-seed0", ["eval=smoke", "run_id=ignored"], then=print)
    evaluations.add("/runs/combo,1", ["eval=smoke", "label=combo", "seed=1"])
    with pytest.raises(RuntimeError, match="expected one new evaluation of /runs/x-seed0"):
        evaluations.run()  # faked: nothing was written to the store
    results = f"'{(tmp_path / 'r.jsonl').resolve()}'"
    tail = ["progress=false"]
    assert [c[1:] for c in commands] == [
        [
            "-m",
            "jina5.evaluate",
            "-m",
            "model='teacher','/runs/x-seed0'",
            f"results={results}",
            *tail,
            "eval=smoke",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ],
        [
            "-m",
            "jina5.evaluate",
            "-m",
            "model='/runs/combo,1'",
            f"results={results}",
            *tail,
            "eval=smoke",
            "label=combo",
            "seed=1",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ],
    ]


# ------------------------------------------------------------------------------ a sweep under submitit


def comparable(store: ResultsStore) -> list[tuple]:
    """The store's records without what differs between two evaluations of the same models (run ids,
    times, item sidecar names)."""
    df = store.read()
    keys = [
        "experiment",
        "seed",
        "model",
        "task",
        "dataset",
        "language",
        "split",
        "metric",
        "dim",
        "precision",
    ]
    out = []
    for row in df.to_dict("records"):
        seed = None if row["seed"] != row["seed"] or row["seed"] is None else int(row["seed"])
        dim = None if row["dim"] != row["dim"] or row["dim"] is None else int(row["dim"])
        out.append(
            (
                *(str(row[k]) for k in keys[:2]),
                seed,
                *(str(row[k]) for k in keys[2:8]),
                dim,
                row["precision"],
                round(float(row["value"]), 6),
            )
        )
    return sorted(out, key=repr)


@pytest.mark.slow  # six Python processes (two drivers, four submitit jobs): 225-664 s on the shared, loaded 2 cores
def test_a_two_job_sweep_under_submitits_local_executor_with_its_evaluations(tmp_path, monkeypatch, capsys):
    """``sweep.py --launcher submitit_local``: the two trainings and their two evaluations are submitit
    jobs (each its own process); the store then holds the same records as the default path's in-process
    evaluation of the same runs."""
    monkeypatch.setenv("JINA5_ROOT", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the jobs import this checkout
    spec = {
        **load_sweeps()["default"],
        "experiments": ["ablation/pure_distill", "ablation/combined"],
        "baselines": [],
    }
    sweeps = {**load_sweeps(), "two": spec}
    monkeypatch.setattr(sweep, "load_sweeps", lambda: sweeps)
    monkeypatch.setattr(tables, "load_sweeps", lambda: sweeps)
    monkeypatch.setattr(sweep, "BUNDLED_MODELS", [])
    results, out = tmp_path / "results.jsonl", tmp_path / "two"
    sweep.main(
        ["two", "--launcher", "submitit_local", "--results", str(results), "--out", str(out), *TOY_EVAL, *TOY]
    )
    printed = capsys.readouterr().out
    assert "hydra/launcher=submitit_local" in printed and "jina5.evaluate -m model=" in printed
    runs = tmp_path / "outputs" / "runs"
    for run in ("pure_distill-seed0", "combined-seed0"):
        assert json.loads((runs / run / "done.json").read_text())["steps"] == 2
    # submitit's job folders (<job id>/; %j/ holds the array's shared pickles): two trainings, two evaluations
    trainings = [p for p in (runs / ".submitit").iterdir() if p.name.isdigit()]
    evaluations = [p for p in (tmp_path / "outputs" / "eval").glob("*/.submitit/*") if p.name.isdigit()]
    assert len(trainings) == 2 and len(evaluations) == 2, (trainings, evaluations)
    summary = json.loads((out / "summary.json").read_text())
    assert {"pure_distill", "combined"} <= set(summary["regimes"])
    assert summary["regimes"]["combined"]["float/overall"] is not None

    # the default path (evaluations in this process) on the same runs: the same records
    plain = tmp_path / "plain.jsonl"
    run_overrides = {
        label: [f"experiment={experiment}", *TOY]
        for label, experiment in (
            ("pure_distill", "ablation/pure_distill"),
            ("combined", "ablation/combined"),
        )
    }
    eval_overrides = TOY_EVAL[1::2]
    sweep.evaluate_sweep(spec, [0], run_overrides, eval_overrides, str(plain), None)
    launched = comparable(ResultsStore(results))
    assert launched == comparable(ResultsStore(plain))
    assert {r[0] for r in launched} == {"pure_distill", "combined"} and len(launched) > 50
