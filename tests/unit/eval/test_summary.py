"""The one averaging rule and the one latest-run rule (jina5.eval.summary), checked against hand values."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import MAIN_METRICS

from jina5.eval.summary import latest_runs, summarise, type_averages


def _rec(run_id, time, task="sts", dataset="x", value=0.5, **extra) -> dict:
    return {
        "run_id": run_id,
        "experiment": "e",
        "seed": 0,
        "time": time,
        "task": task,
        "dataset": dataset,
        "language": None,
        "metric": MAIN_METRICS.get(task, "loss"),
        "dim": 8,
        "precision": "float32",
        "value": value,
        **extra,
    }


def test_latest_runs_keeps_the_newest_run_per_experiment_and_seed():
    df = pd.DataFrame(
        [
            _rec("a", "2024-01-02"),
            _rec("b", "2024-01-03"),
            _rec("a", "2024-01-01"),  # a's older line: b is still the newest run of (e, 0)
            _rec("c", "2024-01-01", seed=1),
            _rec("t1", "2024-01-05", seed=None, experiment="teacher"),
            _rec("t2", "2024-01-04", seed=None, experiment="teacher"),  # baselines: seed None is a group
        ]
    )
    assert latest_runs(df)["run_id"].tolist() == ["b", "c", "t1"]
    assert latest_runs(df, by=())["run_id"].tolist() == ["t1"]
    tie = pd.DataFrame([_rec("x", "2024-01-01"), _rec("y", "2024-01-01")])
    assert latest_runs(tie)["run_id"].tolist() == ["y"]  # a tie: the later line wins
    assert latest_runs(df.iloc[:0]).empty


def test_type_averages_and_summarise_apply_one_rule():
    """retrieval: data set x has two tasks (languages) -> (0.2 + 0.4) / 2 = 0.3; data set y: 0.6;
    type = (0.3 + 0.6) / 2 = 0.45. sts: 0.8. overall = (0.45 + 0.8) / 2 = 0.625."""
    recs = [
        _rec("r", "t", "retrieval", "x", 0.2, language="en", task_name="retrieval/x/en"),
        _rec("r", "t", "retrieval", "x", 0.4, language="de", task_name="retrieval/x/de"),
        _rec("r", "t", "retrieval", "y", 0.6, task_name="retrieval/y"),
        _rec("r", "t", "sts", "z", 0.8, task_name="sts/z"),
        _rec("r", "t", "sts", "z", 0.0, metric="pearson", task_name="sts/z"),  # not the main metric
        _rec("r", "t", "training", "z", 9.0, task_name="training"),  # not a task type
    ]
    averages = type_averages(pd.DataFrame(recs))
    assert averages == pytest.approx({"retrieval": 0.45, "sts": 0.8, "overall": 0.625})
    assert type_averages(pd.DataFrame(recs), dim=8, precision="binary") == {}
    table = summarise(recs).set_index("task_name")
    assert table.loc["retrieval/x (mean of 2)", "score"] == pytest.approx(0.3)
    assert "retrieval/y (mean of 1)" not in table.index  # a one-task data set has no extra row
    for task_type in ("retrieval", "sts"):
        row = table[(table["level"] == "type") & (table["task"] == task_type)]
        assert row["score"].item() == averages[task_type]  # the same numbers, bit for bit
    assert table.loc[table["level"] == "overall", "score"].item() == averages["overall"]


def test_summarise_refuses_mixed_runs():
    recs = [_rec(r, "t") for r in ("a", "b")]
    with pytest.raises(ValueError, match="one run's records"):
        summarise(recs)
    table = summarise(recs[:1])
    assert table.loc[table["level"] == "overall", "score"].item() == 0.5


def test_latest_runs_reads_one_eval_suite_and_never_mixes_another():
    """(e, 0): a default-suite run, then a newer smoke run and a newer run without an evaluation config
    (training records only); (e, 1): a smoke run only; (e, 2): training records only."""
    default, smoke = {"eval": {"suite": "default"}}, {"eval": {"suite": "smoke"}}
    df = pd.DataFrame(
        [
            _rec("d0", "2024-01-01", config=default),
            _rec("s0", "2024-01-02", config=smoke),
            _rec("n0", "2024-01-03", task="training", config={}),
            _rec("s1", "2024-01-01", seed=1, config=smoke),
            _rec("n2", "2024-01-01", seed=2, task="training", config=None),
        ]
    )
    assert latest_runs(df)["run_id"].tolist() == ["d0", "n2"]  # default is the default suite
    assert latest_runs(df, suite="smoke")["run_id"].tolist() == ["s0", "s1", "n2"]
    assert latest_runs(df, suite=None)["run_id"].tolist() == ["n0", "s1", "n2"]  # every suite: the newest
    assert latest_runs(df, suite="default/retrieval")["run_id"].tolist() == ["n0", "n2"]
    # a narrowed suite is a suite of its own
    narrowed = {"eval": {"suite": "default", "variant": "retrieval"}}
    df.loc[len(df)] = _rec("r0", "2024-01-09", config=narrowed)
    assert latest_runs(df)["run_id"].tolist() == ["d0", "n2"]
    assert latest_runs(df, suite="default/retrieval")["run_id"].tolist() == ["n2", "r0"]


def test_runs_stored_before_eval_suite_get_the_suite_whose_settings_they_have():
    """Old runs' eval configs have no `suite` key: the suite file whose settings they equal names them
    (batch size and threads aside), a caller's known settings come next, else `unnamed-<fingerprint>`."""
    from jina5.eval.suite_names import composed_eval, run_suite_id, settings_fingerprint, suite_of

    def old(cfg: dict, **changes) -> dict:
        return {"eval": {k: v for k, v in {**cfg, **changes}.items() if k not in ("suite", "variant")}}

    default, smoke = composed_eval(), composed_eval(["eval=smoke"])
    assert (default["suite"], default["variant"], smoke["suite"]) == ("default", None, "smoke")
    assert run_suite_id(old(default)) == "default"
    assert run_suite_id(old(default, batch_size=7, threads=2)) == "default"
    assert run_suite_id(old(smoke)) == "smoke"
    narrowed = old(default, dims=[])
    fingerprint = settings_fingerprint(narrowed["eval"])
    assert run_suite_id(narrowed) == f"unnamed-{fingerprint[:8]}"
    assert run_suite_id(narrowed, {fingerprint: "default/full_dim"}) == "default/full_dim"
    assert run_suite_id({"eval": {**smoke, "suite": "mine"}}) == "mine"  # explicit wins
    assert run_suite_id({}) is None and run_suite_id(None) is None
    assert suite_of(["eval=smoke", "eval.variant=retrieval"]) == "smoke/retrieval"
