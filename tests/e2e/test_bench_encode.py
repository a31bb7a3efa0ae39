"""experiments/bench_encode.py at toy size: the three contenders encode the same texts (jina5 at fp32
equals sentence-transformers' fp32 vectors), every ratio is printed; the end-to-end helpers export a
revision as a checkout and diff two stores by (task, metric, dim, precision)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
import bench_encode  # noqa: E402


@pytest.mark.integration
def test_encode_contenders_agree_and_the_ratios_are_printed(capsys):
    bench_encode.main(["--n", "16", "--rounds", "1", "--max-length", "32", "--precision", "fp32"])
    out = capsys.readouterr().out
    diffs = dict(re.findall(r"max \|(.+?) - st-fp32\| on 64 texts: (\S+)", out))
    assert float(diffs["jina5 (fp32)"]) < 1e-5 and float(diffs["st-bf16"]) > 0  # bf16 autocast is on
    for other in ("st-fp32", "st-bf16"):
        assert re.search(rf"ratio jina5 \(fp32\) / {other}: \d+\.\d+ \(by CPU time \d+\.\d+\)", out)
    assert out.count("load average") == 2


def _store(path: Path, values: dict[tuple, float]) -> Path:
    rows = [
        dict(zip(("task_name", "metric", "dim", "precision"), k, strict=True), value=v)
        for k, v in values.items()
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_largest_difference_names_the_record(tmp_path):
    a = {("sts/lee", "spearman", 32, "float32"): 0.5, ("sts/lee", "spearman", 16, "binary"): 0.25}
    b = {**a, ("sts/lee", "spearman", 16, "binary"): 0.125, ("x", "ndcg@10", 8, "int8"): 1.0}
    text = bench_encode.largest_difference(_store(tmp_path / "a", a), _store(tmp_path / "b", b))
    assert text == (
        "2 records in both, 1 in one only; max |before - after| = 1.25e-01 at ('sts/lee', 'spearman', 16, 'binary')"
    )
    same = bench_encode.largest_difference(tmp_path / "a", tmp_path / "a")
    assert "max |before - after| = 0.00e+00" in same


def test_export_revision_is_an_importable_checkout(tmp_path):
    tree = bench_encode.export_revision("HEAD", tmp_path / "head")
    assert (tree / "jina5" / "conf" / "eval.yaml").is_file()  # jina5.conf reads conf/, as in a checkout
    head = subprocess.run(
        ["git", "-C", str(ROOT), "show", "HEAD:jina5/evaluate.py"], capture_output=True, text=True
    )
    assert (tree / "jina5" / "evaluate.py").read_text() == head.stdout
