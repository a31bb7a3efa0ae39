"""``python -m jina5.evaluate``: config composition, model resolution, store appends, baseline cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from jina5.conf import compose
from omegaconf import OmegaConf
from threadpoolctl import threadpool_limits

from jina5.eval.models import load_model
from jina5.eval.store import ResultsStore
from jina5.evaluate import evaluate, evaluate_models
from jina5.model.encoder import Encoder

ROOT = Path(__file__).resolve().parents[2]
TINY_BASELINE = [  # the untrained_student baseline, on a tiny random backbone (no assets, seconds)
    "baselines.untrained_student.source=tiny:bert",
    "baselines.untrained_student.max_length=24",
]


def _cfg(*overrides: str):
    return compose(overrides, "eval")


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("JINA5_CACHE", str(tmp_path / "cache"))
    with threadpool_limits(1):
        yield


def test_default_config_composes():
    cfg = _cfg("model=teacher")
    assert cfg.eval.dims == [32, 64, 128, 256, 384]
    assert list(cfg.eval.precisions) == ["float32", "binary", "int8"]
    assert cfg.baselines.teacher.prompts == {"query": "", "document": ""}  # mpnet: no prefixes
    assert cfg.baselines.untrained_student.keep_layers == [0, 2, 4]
    assert cfg.baselines.untrained_student.prompts.query == "Query: "
    assert [d.corpus for d in cfg.eval.sts.datasets] == ["lee_sts"]
    assert cfg.results.endswith("results/results.jsonl")
    smoke = _cfg("model=teacher", "eval=smoke")
    assert smoke.eval.classification.max_test < 100


@pytest.mark.integration
def test_cli_runs_smoke_appends_and_reuses_the_baseline_cache(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results" / "results.jsonl"
    cfg = _cfg(
        "model=untrained_student", "eval=smoke", f"results={results}", "progress=false", *TINY_BASELINE
    )
    first = evaluate(cfg)
    store = ResultsStore(results)
    df = store.read()
    assert len(df) == len(first["records"]) > 0 and first["texts_encoded"] > 0
    assert set(df["experiment"]) == {"untrained_student"} and df["seed"].isna().all()
    assert df["config"].iloc[0]["encoder"]["prompts"] == {"query": "Query: ", "document": "Document: "}
    out = capsys.readouterr().out
    assert (
        "overall (mean of 4 task types)" in out and "retrieval/parlspeech_nl" in out
    )  # the skip is reported
    assert (results.parent / f"{first['run']['run_id']}.summary.txt").exists()

    def boom(self, *args, **kwargs):
        raise AssertionError("encode called although the baseline is cached")

    monkeypatch.setattr(Encoder, "encode", boom)
    second = evaluate(cfg)
    assert second["texts_encoded"] == 0
    assert second["run"]["run_id"] != first["run"]["run_id"]
    assert len(store.read()) == 2 * len(first["records"])
    strip = lambda recs: sorted(  # noqa: E731
        (r["task_name"], r["metric"], r["dim"], r["precision"], r["value"]) for r in recs
    )
    assert strip(second["records"]) == strip(first["records"])
    assert {r["cached_from"] for r in second["records"]} == {first["run"]["run_id"]}
    assert second["summary"]["score"].tolist() == pytest.approx(
        first["summary"]["score"].tolist(), nan_ok=True
    )
    assert "reused from the results store" in capsys.readouterr().out


@pytest.mark.integration
def test_an_exported_graph_is_scored_beside_its_torch_weights(tiny_graphs, tmp_path):
    """``backend=onnx``: encoded afresh (its fingerprint is the graph's, so the torch run's records are not
    reused), filed under its own experiment with the graph named, and its fp32 scores are the torch ones."""
    results = tmp_path / "results.jsonl"
    common = ["eval=smoke", f"results={results}", "progress=false", f"model={tiny_graphs}"]
    torch_run = evaluate(_cfg(*common))
    graph_run = evaluate(_cfg(*common, "backend=onnx"))
    assert graph_run["texts_encoded"] == torch_run["texts_encoded"] > 0
    assert graph_run["run"]["experiment"] == "tiny-bert-onnx"
    assert graph_run["run"]["config"]["graph"] == {
        "backend": "onnx",
        "quantize": "none",
        "file": "onnx/model.onnx",
    }
    assert "graph" not in torch_run["run"]["config"]
    stored = ResultsStore(results).read()
    assert set(stored["experiment"]) == {"tiny-bert", "tiny-bert-onnx"}
    assert stored.groupby("experiment")["model_fingerprint"].nunique().tolist() == [1, 1]
    assert stored["model_fingerprint"].nunique() == 2

    # fp32 graph and torch weights: the same averages (single tasks may swap tied ranks: the tiny model
    # maps every character it does not know, e.g. Chinese, to one token)
    def averages(run):
        table = run["summary"]
        return table[table["level"] != "task"].set_index("task_name")["score"].to_dict()

    assert averages(graph_run) == pytest.approx(averages(torch_run), abs=1e-3)


def test_a_model_list_writes_the_records_of_separate_evaluations(tmp_path):
    """``model=[a,b]`` evaluates both in this process; the store holds what evaluating each alone writes."""
    tiny = ["eval=smoke", "progress=false", *TINY_BASELINE, "baselines.teacher.source=tiny:mpnet"]
    models = ["untrained_student", "teacher"]
    with pytest.raises(ValueError, match="leave run_id null"):
        evaluate_models(_cfg(f"model=[{','.join(models)}]", "run_id=mine", *tiny))
    together = evaluate_models(_cfg(f"model=[{','.join(models)}]", f"results={tmp_path / 'a.jsonl'}", *tiny))
    for model in models:
        evaluate(_cfg(f"model={model}", f"results={tmp_path / 'b.jsonl'}", *tiny))
    a, b = (ResultsStore(tmp_path / name).read() for name in ("a.jsonl", "b.jsonl"))
    fields = ["model", "model_fingerprint", "task_name", "metric", "dim", "precision", "value"]
    rows = lambda df: sorted(map(tuple, df[fields].fillna(-1).to_numpy().tolist()))  # noqa: E731
    assert len(a) == len(b) > 0 and rows(a) == rows(b)
    assert [r["run"]["model"] for r in together] == models
    assert a.groupby("model")["run_id"].nunique().eq(1).all() and a["run_id"].nunique() == 2
    assert all((tmp_path / f"{r['run']['run_id']}.summary.txt").exists() for r in together)


def test_load_model_from_a_run_dir_and_an_encoder_dir(tmp_path):
    run_dir = tmp_path / "runs" / "combined-seed3"
    enc = Encoder("tiny:bert", max_length=20, prompts={"query": "Q: ", "document": "D: "})
    enc.save_pretrained(run_dir / "encoder")
    OmegaConf.save(OmegaConf.create({"experiment_name": "combined", "seed": 3}), run_dir / "config.yaml")
    loaded = load_model(_cfg(f"model={run_dir}"))
    assert (loaded.kind, loaded.experiment, loaded.seed) == ("run", "combined", 3)
    assert loaded.encoder.prompts == {"query": "Q: ", "document": "D: "} and loaded.encoder.max_length == 20
    exported = load_model(_cfg(f"model={run_dir / 'encoder'}", "max_length=12"))
    assert (exported.kind, exported.seed, exported.encoder.max_length) == ("encoder_dir", None, 12)
    # a run given its own run_name is reported under it (seed suffix dropped), not merged into "combined"
    OmegaConf.save(
        OmegaConf.create({"experiment_name": "combined", "seed": 3, "run_name": "combined-lr3e-4-seed3"}),
        run_dir / "config.yaml",
    )
    assert load_model(_cfg(f"model={run_dir}")).experiment == "combined-lr3e-4"
    hub = load_model(_cfg("model=tiny:bert", "prompts={query: 'q: ', document: 'd: '}"))
    assert hub.kind == "source" and hub.encoder.prompts == {"query": "q: ", "document": "d: "}
    with pytest.raises(FileNotFoundError, match="neither a run dir"):
        load_model(_cfg(f"model={tmp_path}"))


@pytest.mark.slow
def test_cli_subprocess(tmp_path):
    results = tmp_path / "r.jsonl"
    env = {**os.environ, "JINA5_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jina5.evaluate",
            "model=tiny:bert",
            "eval=smoke",
            "max_length=24",
            "progress=false",
            f"results={results}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "overall (mean of 4 task types)" in proc.stdout
    assert len(ResultsStore(results).read()) > 0


def test_label_is_a_plain_key_not_the_experiment_config_group():
    # `experiment=<label>` was read by Hydra as the conf/experiment group and failed to compose, so the
    # sweeps could not file a stage-1 run or combined adapters under their labels
    assert compose(["model=untrained_student", "label=stage1"], "eval").label == "stage1"
    with pytest.raises(Exception, match="experiment"):
        compose(["model=untrained_student", "experiment=stage1"], "eval")


@pytest.mark.parametrize("spec", ["/nope/run", "./typo", "outputs/runs/typo", "typo/"])
def test_a_missing_path_fails_at_once_without_the_hub(tmp_path, monkeypatch, spec):
    import transformers

    def no_hub(*args, **kwargs):
        raise AssertionError(f"from_pretrained called with {args}: a hub lookup was attempted")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_hub)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "runs").mkdir(parents=True)  # `outputs/` exists: outputs/runs/typo is a path
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as err:
        load_model(_cfg(f"model={spec}"))
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert message.startswith(f"model={spec}: no such run or encoder directory")
    assert "teacher" in message and "untrained_student" in message  # the baselines, as alternatives


def test_a_run_path_under_another_root_fails_with_the_run_message(tmp_path, monkeypatch):
    """Issue 23, item 7: with ``JINA5_ROOT`` set, ``model=outputs/runs/<run>`` evaluated from a directory
    without ``outputs/`` went to transformers as a hub id ("Repo id must be in the form ...").
    A spec with two separators is never a hub id: it ends in load_model's own message."""
    monkeypatch.chdir(tmp_path)  # no outputs/ here
    with pytest.raises(
        FileNotFoundError, match=r"^model=outputs/runs/combined-seed0: no such run or encoder"
    ):
        load_model(_cfg("model=outputs/runs/combined-seed0"))


def test_hub_ids_and_sources_are_not_path_like(tmp_path, monkeypatch):
    from jina5.assets import is_path_like

    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    for spec in ["sentence-transformers/all-MiniLM-L6-v2", "Qwen/Qwen3-Embedding-4B", "tiny:bert", "hub:a/b"]:
        assert not is_path_like(spec), spec
    (tmp_path / "sentence-transformers").mkdir()  # a bundled name stays a model name even then
    assert not is_path_like("sentence-transformers/all-MiniLM-L6-v2")
    for spec in ["/x", "./x", "../x", "~/x", "x/", "outputs/x", ".", ".."]:
        assert is_path_like(spec), spec
    # two separators or more: never a hub id (<owner>/<name>), whether the first folder exists here or not
    assert is_path_like("elsewhere/runs/combined-seed0") and not (tmp_path / "elsewhere").exists()


# ---------------------------------------------------------------------------------------------- complete or absent
ONE_RETRIEVAL = [  # the smoke suite with one retrieval task: retrieval/bbc, sts, classification, clustering
    "model=tiny:bert",
    "max_length=24",
    "eval=smoke",
    "eval.retrieval.datasets=[{corpus: bbc}]",
    "progress=false",
]
LATER_TASKS = ("sts/lee_sts", "classification/bbc", "clustering/bbc")


@pytest.mark.integration
def test_a_killed_evaluation_is_left_out_reported_and_resumed(tmp_path, caplog):
    """SIGKILL after the first of four tasks (retrieval/bbc) stored: the store holds a retrieval-only run,
    whose `overall` would be the retrieval average. No reader sees it (tables, latest_runs, the card, the
    cache); a warning names it and its three lacking tasks; the rerun resumes it (the stored task is not
    evaluated again) and scores exactly what an uninterrupted evaluation scores."""
    from helpers import start_paused, wait_paused

    from jina5.eval.summary import latest_runs
    from jina5.export import add_eval_metrics
    from jina5.model.card import CardInfo
    from jina5.report.aggregate import stored_rows

    results = tmp_path / "results" / "results.jsonl"
    overrides = [*ONE_RETRIEVAL, f"results={results}"]
    child = start_paused(
        tmp_path / "child",
        "jina5.eval.store:ResultsStore.append",
        1,  # run_suite appends once per task
        "jina5.evaluate",
        *overrides,
        f"hydra.run.dir={tmp_path / 'hydra'}",
        JINA5_CACHE=os.environ["JINA5_CACHE"],
    )
    wait_paused(child, tmp_path / "child")
    child.kill()
    child.wait()
    store = ResultsStore(results)
    assert set(pd.read_json(results, lines=True)["task_name"]) == {"retrieval/bbc"}  # on disk: 1 task

    with caplog.at_level("WARNING", logger="jina5.eval.store"):
        seen = store.read()
    assert seen.empty, f"a killed run is visible: {sorted(set(seen['task_name']))}"
    assert latest_runs(stored_rows(store), suite="smoke").empty  # the tables and the notebook
    encoder = load_model(_cfg(*overrides)).encoder
    assert add_eval_metrics(CardInfo(), results, encoder).eval_run is None  # the model card
    (partial,) = store.partial_runs().values()
    assert (partial.stored, partial.lacking) == (("retrieval/bbc",), LATER_TASKS)
    assert f"run {partial.run_id} " in caplog.text and ", ".join(LATER_TASKS) in caplog.text

    resumed = evaluate(_cfg(*overrides))
    computed = {r["task_name"] for r in resumed["records"] if r["cached_from"] is None}
    assert computed == set(LATER_TASKS)  # the stored task is resumed, not evaluated again
    assert {r["cached_from"] for r in resumed["records"] if r["task_name"] == "retrieval/bbc"} == {
        partial.run_id
    }
    assert store.partial_runs()[partial.run_id].resumed_by == resumed["run"]["run_id"]
    shown = store.read()
    assert set(shown["run_id"]) == {resumed["run"]["run_id"]} and len(shown) == len(resumed["records"])

    reference = evaluate(_cfg(*ONE_RETRIEVAL, f"results={tmp_path / 'unbroken' / 'results.jsonl'}"))
    pd.testing.assert_series_equal(resumed["summary"]["score"], reference["summary"]["score"])


@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_an_unwritable_results_path_fails_before_the_model_loads(tmp_path, where):
    """`results=` under a file (no folder can be made there) or naming a folder: the error names the path
    and the way out before any model loads or task runs (before: the whole suite ran, then the first write
    failed); following the advice (another store) evaluates."""
    import jina5.evaluate as evaluate_mod

    (tmp_path / "file").write_text("x")
    (tmp_path / "folder" / "results.jsonl").mkdir(parents=True)
    results = tmp_path / ("file/results.jsonl" if where == "under a file" else "folder/results.jsonl")

    def no_model(cfg):
        raise AssertionError("the model loaded although the results store cannot be written")

    with pytest.MonkeyPatch.context() as mp, pytest.raises(PermissionError) as err:
        mp.setattr(evaluate_mod, "load_model", no_model)
        evaluate(_cfg(*ONE_RETRIEVAL, f"results={results}"))
    assert str(err.value).startswith(f"results store {results} cannot be written")
    assert "nothing was evaluated" in str(err.value) and "results=<dir>/results.jsonl" in str(err.value)
    other = tmp_path / "elsewhere" / "results.jsonl"
    evaluate(_cfg(*ONE_RETRIEVAL, f"results={other}"))
    assert set(ResultsStore(other).read()["task"]) == {"retrieval", "sts", "classification", "clustering"}
