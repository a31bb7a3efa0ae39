"""experiments/bench_inference.py and experiments/eval_exports.py on the tiny exported graphs: every
contender is timed and agrees with torch fp32; every graph is scored beside torch fp32 with a paired
interval of the difference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
import bench_inference  # noqa: E402
import eval_exports  # noqa: E402


def test_every_contender_is_timed_and_encodes_as_torch_fp32(tiny_graphs, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = [
        "--export",
        str(tiny_graphs),
        "--n",
        "24",
        "--rounds",
        "2",
        "--batch-size",
        "8",
        "--max-length",
        "16",
    ]
    result = bench_inference.main([*args, "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = result["contenders"]
    assert list(rows) == list(bench_inference.CONTENDERS)
    assert all(len(r["rounds"]) == 2 and r["texts_per_s"] > 0 for r in rows.values())
    assert rows["torch fp32"]["ratio"] == 1.0 and rows["torch fp32"]["min_cosine"] == pytest.approx(1.0)
    for name, bound in [("ONNX", 0.9999), ("OpenVINO", 0.9999), ("ONNX int8", 0.99), ("OpenVINO int8", 0.99)]:
        assert rows[name]["min_cosine"] >= bound, name
    assert rows["ONNX"]["ratio"] == pytest.approx(
        rows["ONNX"]["texts_per_s"] / rows["torch fp32"]["texts_per_s"]
    )
    printed = capsys.readouterr().out
    assert result["cpu"] in printed and "load average" in printed and "| OpenVINO int8" in printed


@pytest.mark.integration
def test_every_graph_is_scored_beside_torch_fp32(tiny_graphs, tmp_path):
    out = tmp_path / "table.md"
    results = tmp_path / "results.jsonl"
    rows = eval_exports.main(
        ["--export", str(tiny_graphs), "--results", str(results), "--out", str(out), "eval=smoke"]
    )
    assert list(rows) == list(eval_exports.ROWS)
    same = rows["torch fp32"]["vs_torch_fp32"]["overall"]
    assert same["delta"] == same["low"] == same["high"] == 0.0  # the reference against itself
    onnx = rows["ONNX"]["vs_torch_fp32"]["overall"]
    assert abs(onnx["delta"]) < 2e-3 and onnx["low"] <= onnx["delta"] <= onnx["high"]
    int8 = rows["ONNX int8"]["vs_torch_fp32"]["overall"]
    assert int8["low"] <= int8["delta"] <= int8["high"] and int8["verdict"] in ("tie", "better", "worse")
    for name, row in rows.items():
        assert set(row["vs_torch_fp32"]) == set(eval_exports.LEVELS), name
        assert row["float32"]["overall"] == pytest.approx(
            rows["torch fp32"]["float32"]["overall"] + row["vs_torch_fp32"]["overall"]["delta"], abs=1e-9
        )
    table = out.read_text()
    assert table.count("\n") == 2 + len(rows) and "overall - torch fp32 [95% CI]" in table
    assert json.loads(out.with_suffix(".json").read_text()) == json.loads(json.dumps(rows))
