"""The ablation pipeline end to end at toy size: multirun training, evaluation, tables, rerun skips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
import sweep  # noqa: E402

TOY = [
    "student.source=tiny:bert",
    "teacher.source=tiny:mpnet",
    "data.datasets=[{name: bbc, batch_size: 8, query_max_length: 16, document_max_length: 32, max_rows: 48}]",
    "data.dev_datasets=[bbc]",
    "data.dev_pairs=16",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.enable_progress_bar=false",
    "objective.matryoshka.dims=[8,16,32]",
]
TOY_EVAL = [
    "--eval",
    "eval=smoke",
    "--eval",
    "baselines.teacher.source=tiny:mpnet",
    "--eval",
    "baselines.untrained_student.source=tiny:bert",
]


def test_default_sweep_trains_evaluates_tabulates_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JINA5_ROOT", str(tmp_path))
    results, out = tmp_path / "results.jsonl", tmp_path / "ablation"
    argv = ["default", "--results", str(results), "--out", str(out), *TOY_EVAL, *TOY]
    sweep.main(argv)
    printed = capsys.readouterr().out
    for phase in ("[1/4]", "[2/4] training 3 experiment(s) x 1 seed(s)", "[3/4]", "[4/4]", "per-phase time:"):
        assert phase in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["regimes"]) == {
        "teacher",
        "untrained_student",
        "pure_distill",
        "pure_contrastive",
        "combined",
    }
    for regime in ("pure_distill", "pure_contrastive", "combined"):
        values = summary["regimes"][regime]
        for key in (
            "float/overall",
            "float/retrieval",
            "float/sts",
            "float/classification",
            "float/clustering",
            "binary/overall",
            "train_seconds",
        ):
            assert values[key] is not None, (regime, key)
    for run in ("pure_distill-seed0", "pure_contrastive-seed0", "combined-seed0"):
        assert (tmp_path / "outputs" / "runs" / run / "done.json").exists()
    lines = results.read_text().splitlines()
    assert any(json.loads(line)["task"] == "dev_curve" for line in lines)

    # a rerun skips the finished runs (no new checkpoints) and rebuilds the same tables
    ckpt = tmp_path / "outputs" / "runs" / "combined-seed0" / "checkpoints" / "last.ckpt"
    stamp = ckpt.stat().st_mtime_ns
    sweep.main(argv)
    assert ckpt.stat().st_mtime_ns == stamp
    again = json.loads((out / "summary.json").read_text())
    assert again["regimes"]["combined"]["float/overall"] == summary["regimes"]["combined"]["float/overall"]
