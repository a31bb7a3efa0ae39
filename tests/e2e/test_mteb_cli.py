"""``python -m jina5.mteb``: config composition, and a run on mteb's offline mock tasks whose main scores
land in our results store exactly as mteb reported (and saved) them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jina5.conf import compose
from threadpoolctl import threadpool_limits

from jina5.eval.encoding import model_fingerprint
from jina5.eval.store import ResultsStore
from jina5.model.encoder import Encoder

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = {"query": "Query: ", "document": "Document: "}
MOCKS = ["mteb.mocks:MockRetrievalTask", "mteb.mocks:MockSTSTask"]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("JINA5_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with threadpool_limits(1):
        yield


def test_config_composes_on_the_eval_config():
    cfg = compose(["model=teacher", f"tasks=[STS12,{MOCKS[0]}]"], "mteb")
    assert list(cfg.tasks) == ["STS12", MOCKS[0]]
    assert list(cfg.precisions) == ["float32"] and list(cfg.dims) == []
    assert cfg.mteb_cache.endswith("results/mteb") and cfg.results.endswith("results/results.jsonl")
    assert cfg.baselines.teacher.source == "sentence-transformers/all-mpnet-base-v2"  # eval.yaml's


def test_cli_prints_its_config_without_running(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "jina5.mteb", "model=teacher", "tasks=[STS12]", "--cfg", "job"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JINA5_ROOT": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert "tasks:\n- STS12" in out.stdout and "mteb_cache:" in out.stdout


def test_run_writes_mteb_s_main_scores_to_the_results_store(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mteb")
    from jina5.mteb import run_mteb

    encoder_dir = Encoder("tiny:bert", max_length=32, prompts=PROMPTS).save_pretrained(tmp_path / "tiny")
    results, mteb_cache = tmp_path / "results" / "results.jsonl", tmp_path / "mteb"
    cfg = compose(
        [
            f"model={encoder_dir}",
            f"tasks=[{','.join(MOCKS)}]",
            "dims=[16]",
            "precisions=[float32,binary]",
            f"results={results}",
            f"mteb_cache={mteb_cache}",
            "progress=false",
        ],
        "mteb",
    )
    out = run_mteb(cfg)
    fingerprint = model_fingerprint(Encoder.from_pretrained(encoder_dir))
    df = ResultsStore(results).read()
    # 2 dims x 2 precisions x (retrieval: val + test, STS: test)
    assert len(df) == len(out["records"]) == 12
    assert set(df["experiment"]) == {"tiny"} and df["seed"].isna().all()
    assert set(df["model_fingerprint"]) == {fingerprint} and set(df["mteb_revision"]) == {fingerprint}
    assert set(df["task"]) == {"mteb:Retrieval", "mteb:STS"}
    assert set(df["metric"]) == {"ndcg_at_10", "cosine_spearman"}
    assert set(df["dim"]) == {16, 32} and set(df["precision"]) == {"float32", "binary"}
    evaluated = df["config"].iloc[0]["eval"]
    assert evaluated["suite"] == "mteb" and evaluated["tasks"] == ["MockRetrievalTask", "MockSTSTask"]
    # every stored value is the main score mteb saved in its own result file for that setting
    model_dir = mteb_cache / "results" / "jina5__tiny" / fingerprint
    for row in df.itertuples():
        sub = [f"embed_dim_{row.dim}"] if row.dim == 16 else []
        sub += ["output_dtypes_binary"] if row.precision == "binary" else []
        folder = model_dir / "experiments" / "__".join(sub) if sub else model_dir
        saved = json.loads((folder / f"{row.dataset}.json").read_text())
        (score,) = [s for s in saved["scores"][row.split] if s["hf_subset"] == "default"]
        assert row.value == pytest.approx(score["main_score"], abs=1e-12), (row.dataset, row.dim)
    assert "MockSTSTask" in capsys.readouterr().out
    # a run killed before its last (dim, precision) would be partial: it is filed as started, then complete
    runs = [json.loads(line) for line in ResultsStore(results).runs_path.read_text().splitlines()]
    assert [r.get("evaluation", {}).get("status") for r in runs] == ["started", "complete"]

    def boom(self, *args, **kwargs):
        raise AssertionError("encode called although mteb's cache holds this model's results")

    monkeypatch.setattr(Encoder, "encode", boom)
    again = run_mteb(cfg)  # same model (same fingerprint): mteb's cache answers, rounded as it saved them
    key = lambda r: (r["dataset"], r["split"], r["dim"], r["precision"])  # noqa: E731
    first = {key(r): r["value"] for r in out["records"]}
    assert {key(r): pytest.approx(first[key(r)], abs=1e-9) for r in again["records"]} == first
    assert len(ResultsStore(results).read()) == 24
