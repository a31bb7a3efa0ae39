"""The results store's rows, aggregated per experiment: one row per experiment, the mean and sample std
over its seeds.

Aggregation (one run = the latest evaluation of one (experiment, seed) in one suite,
:func:`jina5.eval.summary.latest_runs`): per task the main metric (nDCG@10, Spearman, accuracy, V-measure)
at a (dim, precision); tasks of one data set (chatterbot's languages) are averaged first; a task type is
the mean over its data sets; ``overall`` is the mean of the task-type averages
(:func:`jina5.eval.summary.type_averages`). Over the n seeds of a row, values x_1..x_n: the mean
sum(x_s) / n and the sample std sqrt(sum((x_s - mean)^2) / (n - 1)), NaN for one seed.

Shapes: :func:`regime_table` is experiment x value (each value also as ``<value>_std``, and ``seeds``);
:func:`dim_table` experiment x Matryoshka dim; :func:`curve_table` experiment x training step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from jina5.eval.store import ResultsStore
from jina5.eval.suite_names import with_suites
from jina5.eval.summary import main_metric_rows, seed_keys, type_averages
from jina5.report.sweep_spec import known_suites


def stored_rows(results: ResultsStore) -> pd.DataFrame:
    """Every row of ``results`` with its ``suite``: runs stored before ``eval.suite`` existed are told
    apart by their evaluation settings (:func:`jina5.report.sweep_spec.known_suites`)."""
    return with_suites(results.read(), known_suites())


def run_summary(run: pd.DataFrame) -> dict:
    """Float full-dim averages, binary and 128-dim overall, training seconds of one run."""
    full = type_averages(run)
    train = run[(run["task"] == "training") & (run["metric"] == "train_seconds")]["value"]
    return {
        **{f"float/{k}": v for k, v in full.items()},
        "binary/overall": type_averages(run, precision="binary").get("overall", math.nan),
        "int8/overall": type_averages(run, precision="int8").get("overall", math.nan),
        "dim128/overall": type_averages(run, dim=128).get("overall", math.nan),
        "binary/retrieval": type_averages(run, precision="binary").get("retrieval", math.nan),
        "binary_drop/retrieval": (
            type_averages(run, precision="binary").get("retrieval", math.nan)
            - full.get("retrieval", math.nan)
        ),
        "train_seconds": float(train.iloc[-1]) if len(train) else math.nan,
    }


def regime_table(df: pd.DataFrame, experiments: Sequence[str]) -> pd.DataFrame:
    """One row per experiment (mean and std over its seeds) of ``run_summary``'s values."""
    rows = []
    for exp in experiments:
        runs = df[df["experiment"] == exp]
        if runs.empty:
            continue
        per_seed = pd.DataFrame([run_summary(g) for _, g in runs.groupby(seed_keys(runs["seed"]))])
        row = {"experiment": exp, "seeds": len(per_seed)}
        for col in per_seed.columns:
            row[col] = per_seed[col].mean()
            row[f"{col}_std"] = per_seed[col].std(ddof=1) if len(per_seed) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def dim_table(
    df: pd.DataFrame, experiments: Sequence[str], precision: str = "float32", stat: str = "mean"
) -> pd.DataFrame:
    """Overall average at every evaluated Matryoshka dim, its seed ``stat`` (``mean``, or ``std``: the
    sample std, NaN for one seed): one row per experiment, one column per dim."""
    rows = {}
    for exp in experiments:
        runs = df[df["experiment"] == exp]
        if runs.empty or main_metric_rows(runs).empty:
            continue
        dims = sorted(int(d) for d in main_metric_rows(runs)["dim"].unique())
        per_seed = pd.DataFrame(
            [
                {d: type_averages(g, d, precision).get("overall", math.nan) for d in dims}
                for _, g in runs.groupby(seed_keys(runs["seed"]))
            ]
        )
        rows[exp] = per_seed.mean() if stat == "mean" else per_seed.std(ddof=1)
    return pd.DataFrame(rows).T


def curve_table(
    df: pd.DataFrame, experiments: Sequence[str], metric: str = "ndcg@10", stat: str = "mean"
) -> pd.DataFrame:
    """Dev ``metric`` at every checked step, its seed ``stat`` (``mean`` or ``std``): one row per
    experiment, one column per step."""
    rows = {}
    for exp in experiments:
        curve = df[(df["experiment"] == exp) & (df["task"] == "dev_curve") & (df["metric"] == metric)]
        if not curve.empty:
            by_step = curve.groupby(curve["step"].astype(int))["value"]
            rows[exp] = by_step.mean() if stat == "mean" else by_step.std(ddof=1)
    return pd.DataFrame(rows).T


def teacher_dev_level(df: pd.DataFrame, experiments: Sequence[str], metric: str = "ndcg@10") -> float | None:
    """The teacher's dev ``metric`` on the same dev pairs (logged as ``val/teacher_<metric>``), or None."""
    rows = df[
        (df["task"] == "dev_curve")
        & (df["metric"] == f"teacher_{metric}")
        & df["experiment"].isin(experiments)
    ]
    return float(rows["value"].mean()) if len(rows) else None
