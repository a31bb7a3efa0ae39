"""experiments/bench_teacher_store.py --smoke: every lookup returned its own row (checked in the child
processes), the in-RAM cache's float32 tables cost memory the store's locations do not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
import bench_teacher_store  # noqa: E402


def test_smoke_run_measures_both_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    record = bench_teacher_store.main(["--smoke", "--root", str(tmp_path), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    impls = [(r["impl"], r["n"]) for r in record["results"]]
    assert impls == [("in-RAM cache (before)", 3000), ("store", 3000), ("store", 6000)]
    for r in record["results"]:
        assert r["us_per_text"] > 0 and r["rss_lookups"]["VmRSS"] > 0
    assert not list(tmp_path.glob("teacher-store-bench-*"))  # the stores are removed
