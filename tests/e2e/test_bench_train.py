"""experiments/bench_train.py at toy size: both trainers see the same texts in the same order, their losses
agree on the first batch (InfoNCE = MNRL; distillation = 2 B x EmbedDistillLoss = a hand computation),
and every contender gets a positive throughput."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
import bench_train  # noqa: E402

from jina5.training.objective import find_distillation  # noqa: E402

# the benchmark's own smoke run takes ~70 s on 2 cores: `pytest -m slow tests/e2e/test_bench_train.py`
pytestmark = pytest.mark.slow

SMOKE = ["--smoke", "--rounds", "1", "--n", "64", "--warmup", "1", "--batch-size", "32"]


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    returned = bench_train.main([*SMOKE, "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(returned))
    return returned


def test_both_trainers_see_the_same_texts_in_the_same_order(result):
    assert [r["objective"] for r in result["objectives"]] == ["infonce", "distill"]
    steps = result["warmup"] + result["steps"]
    for record in result["objectives"]:
        assert record["same_batches"], record["objective"]
        # every step embeds B queries and B documents, on both sides
        assert set(record["texts_per_round"].values()) == {steps * 2 * result["batch_size"]}


def test_first_batch_losses_agree(result):
    infonce, distill = (r["first_batch_loss"] for r in result["objectives"])
    assert infonce["jina5"] == pytest.approx(infonce["sentence_transformers"], rel=1e-5)
    assert infonce["jina5"] > 0
    # ours sums over the batch and both sides; theirs averages: L = 2 B L_st
    assert distill["jina5"] == pytest.approx(2 * 32 * distill["sentence_transformers"], rel=1e-5)


def test_each_precision_setting_runs_what_it_says(result):
    """bf16 autocast in every forward of ST's bf16=True and of ours at precision=auto where the CPU has
    native bf16; in none of the fp32 ones (a reused model once kept its first Trainer's precision)."""
    auto = "all" if result["cpu_bf16_flags"] else "none"
    expected = {"jina5/fp32": "none", "jina5/auto": auto, "sentence-transformers/fp32": "none"}
    expected["sentence-transformers/bf16"] = "all"
    for record in result["objectives"]:
        seen = {f"{c['contender']}/{c['precision']}": c["bf16_autocast"] for c in record["contenders"]}
        assert seen == expected, record["objective"]


def test_every_contender_has_a_positive_throughput(result):
    for record in result["objectives"]:
        seen = {(c["contender"], c["precision"]) for c in record["contenders"]}
        assert seen == {
            ("jina5", "fp32"),
            ("jina5", "auto"),
            ("sentence-transformers", "fp32"),
            ("sentence-transformers", "bf16"),
        }
        for c in record["contenders"]:
            assert c["pairs_per_s"] > 0 and math.isfinite(c["pairs_per_s"])
            assert c["pairs_per_s"] == pytest.approx(result["batch_size"] / c["s_per_step"])
    # wall-time ratios and CPU-time ratios (steadier on a shared machine)
    assert set(result["ratio"]) == {"fp32", "bf16", "fp32_both", "cpu_fp32", "cpu_bf16", "cpu_fp32_both"}
    assert all(v > 0 for v in result["ratio"].values())


def test_distillation_loss_matches_a_hand_computation(tmp_path):
    """Ours on the first batch (collator, Encoder, EmbeddingDistillation) against sum_i sum_z
    (1 - cos(W s + b, t)) over sentence-transformers' own encodes of the same prefixed texts."""
    args = bench_train.parse_args([*SMOKE, "--objective", "distill"])
    cfg = bench_train.compose_ours("distill", args, str(tmp_path / "run"))
    module, datamodule, _ = bench_train.build(cfg)
    bench_train.prepare_data(datamodule)
    keys = bench_train.batch_keys(datamodule, 1)
    dataset = bench_train.st_dataset(datamodule, keys, "distill")
    exported = module.encoder.save_pretrained(tmp_path / "student")
    model = bench_train.st_student(exported, args.max_length)
    ours = bench_train.first_batch_losses(
        "distill", module, datamodule, model, dataset, cfg, 32, str(tmp_path / "st")
    )["jina5"]

    prompts = cfg.student.prompts
    s_q = model.encode(dataset["query"], prompt=prompts.query, batch_size=7)  # another padding
    s_d = model.encode(dataset["document"], prompt=prompts.document, batch_size=7)
    psi = find_distillation(module.objective).proj
    w, b = psi.weight.detach().numpy(), psi.bias.detach().numpy()
    labels = np.asarray(dataset["label"], dtype=np.float64)  # (B, 2, Dt)
    expected = 0.0
    for s, t in ((s_q, labels[:, 0]), (s_d, labels[:, 1])):
        p = s.astype(np.float64) @ w.T + b
        cos = (p * t).sum(1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1))
        expected += float((1 - cos).sum())
    assert ours == pytest.approx(expected, rel=1e-5)
    assert expected > 1.0  # a random psi and tiny teacher: far from a trivial 0
