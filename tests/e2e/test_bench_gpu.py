"""experiments/bench_gpu.py: its FLOP count by hand, and ``--smoke`` end to end in a process where
Hydra, omegaconf and faiss cannot be imported (the GPU machine has none of them)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
import bench_gpu  # noqa: E402

BLOCKED = ("hydra", "omegaconf", "antlr4", "faiss")
MEASURES = (
    "tokens_per_s",
    "tflops",
    "mfu_pct",
    "peak_mem_gib",
    "step_s",
    "flops_per_step",
    "tokens_per_step",
)


def test_step_flops_by_hand():
    model = bench_gpu.build_backbone(bench_gpu.SHAPES["small"], bench_gpu.torch.device("cpu"), True, None)
    c = model.config  # 2 layers, hidden 32, 4 heads x head_dim 8 (attention width 32), vocab 128
    n = sum(p.numel() for p in model.parameters()) - 128 * 32
    assert bench_gpu.step_flops(model, [3, 5]) == 6 * n * 8 + 12 * 2 * 32 * (9 + 25)
    assert c.num_hidden_layers == 2 and c.num_attention_heads * c.head_dim == 32


def test_variable_lengths_are_seeded_and_reach_the_maximum():
    q, d = bench_gpu.lengths_for("d", 64, 64, 512)
    assert (q, d) == bench_gpu.lengths_for("b_varlen", 64, 64, 512)
    assert max(q) == 64 and min(q) >= 8 and max(d) == 512 and min(d) >= 32 and len(set(d)) > 30
    assert bench_gpu.lengths_for("b", 4, 8, 32) == ([8] * 4, [32] * 4)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench_gpu") / "bench.json"
    blocker = f"import sys\nfor m in {BLOCKED!r}: sys.modules[m] = None\n"
    code = blocker + f"sys.path.insert(0, {str(ROOT / 'experiments')!r})\nimport bench_gpu\n"
    code += f"bench_gpu.main(['--smoke', '--out', {str(out)!r}])\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| small | a hf_eager |" in proc.stdout  # the table
    return json.loads(out.read_text())


def test_smoke_runs_every_variant_without_hydra(smoke):
    assert smoke["smoke"] and smoke["matmul_ceiling"]["tflops"] > 0
    rows = {(r["shape"], r["variant"]): r for r in smoke["results"]}
    for shape in ("small", "nano"):
        for variant in ("a", "b", "b_varlen", "c", "d", "cd"):
            assert rows[shape, variant]["status"] == "ok", rows[shape, variant]
        grad_cache = rows[shape, "e"]["status"]
        assert grad_cache == "ok" or grad_cache.startswith("skipped: EmbeddingModule has no grad_cache")


def test_smoke_measures_are_positive_and_consistent(smoke):
    ceiling = smoke["matmul_ceiling"]["tflops"]
    for r in (r for r in smoke["results"] if r["status"] == "ok"):
        for key in MEASURES:
            assert math.isfinite(r[key]) and r[key] > 0, (r["shape"], r["variant"], key)
        assert r["tokens_per_s"] == pytest.approx(r["tokens_per_step"] / r["step_s"])
        assert r["tflops"] == pytest.approx(r["flops_per_step"] / r["step_s"] / 1e12)
        assert r["mfu_pct"] == pytest.approx(100 * r["tflops"] / ceiling)
        assert r["steps_timed"] >= 1
    rows = {(r["shape"], r["variant"]): r for r in smoke["results"]}
    # the packed step does the variable-length batch's work: same tokens and FLOPs as its padded twin
    for shape in ("small", "nano"):
        for packed in ("d", "cd"):
            assert rows[shape, packed]["flops_per_step"] == rows[shape, "b_varlen"]["flops_per_step"]
        assert rows[shape, "d"]["tokens_per_step"] < rows[shape, "b"]["tokens_per_step"]


def test_smoke_variants_compute_the_same_first_loss(smoke):
    """Same initial weights and batch: compiling and packing do not change the loss (fp32 on the CPU)."""
    rows = {(r["shape"], r["variant"]): r["first_loss"] for r in smoke["results"] if r["status"] == "ok"}
    for shape in ("small", "nano"):
        assert rows[shape, "c"] == pytest.approx(rows[shape, "b"], abs=1e-5)
        for packed in ("d", "cd"):
            assert rows[shape, packed] == pytest.approx(rows[shape, "b_varlen"], abs=1e-5)
        assert rows[shape, "b"] != pytest.approx(
            rows[shape, "b_varlen"], abs=1e-3
        )  # other lengths, other loss
