"""The one averaging rule and the one "latest run" rule, for the suite, the tables and the notebook.

**Latest run.** :func:`latest_runs` keeps, per group (``(experiment, seed)`` for the tables; one
group for the suite's cache lookup), the records of the run whose newest line is the newest (``time``,
ISO 8601 UTC); on a tie the later line in the store wins. A seed None (baselines) is a group of its own.
Only runs of ONE evaluation suite compete (``suite``, default ``default``; the suite ids of
:mod:`jina5.eval.suite_names`): runs of another suite are dropped, never mixed in, and a run without an
evaluation config (training records only: dev curves, wall time) stands in only where its group has
no run of the suite. ``suite=None`` (the suite's cache lookup) compares every run.

**Averages.** The main metric (:data:`jina5.eval.task_types.MAIN_METRIC`) of each task; a data set
scored as several tasks (``group_by``, e.g. chatterbot per language) counts once, as the mean over
its tasks (as MTEB averages a multilingual task's subsets); a task type's average is the mean over
its data sets; ``overall`` is the mean of the task-type averages::

    dataset(t, d) = mean_{tasks of d} score,   type(t) = mean_d dataset(t, d),   overall = mean_t type(t)

:func:`type_averages` applies it to one run at a (dim, precision); :func:`summarise` applies it to
the float32 / binary / int8 scores at full dim and the float32 score at the smallest dim, and keeps
every level as rows; :func:`format_summary` prints that table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from jina5.eval.suite_names import DEFAULT_SUITE, run_suites
from jina5.eval.task_types import MAIN_METRIC, TASK_TYPES

SUMMARY_COLUMNS = ("score", "binary", "int8", "min_dim_score")


# ---------------------------------------------------------------------------------------------- latest run
def seed_keys(seeds: pd.Series) -> pd.Series:
    """Seeds as group keys that keep baselines (seed None) instead of dropping them."""
    return seeds.map(lambda s: "none" if pd.isna(s) else str(int(s)))


def latest_runs(
    df: pd.DataFrame, by: Sequence[str] = ("experiment", "seed"), suite: str | None = DEFAULT_SUITE
) -> pd.DataFrame:
    """The rows of the latest run_id of each ``by`` group among the runs of evaluation suite ``suite``
    (module docstring), in store order.

    ``by=()`` keeps the latest run of the whole frame; ``suite=None`` takes every run whatever its suite.
    A run's suite is the frame's ``suite`` column where it has one (:func:`jina5.eval.suite_names.with_suites`
    adds it once for several reads), else derived from its ``config``.
    """
    if df.empty:
        return df
    if suite is not None:
        suites = run_suites(df)
        df = df[(suites == suite) | suites.isna()]
        # a run of the suite outranks a newer run without an evaluation config (training records only)
        of_suite = suites[df.index].notna()
        ordered = df.assign(_of_suite=of_suite).sort_values(["_of_suite", "time"], kind="stable")
    else:
        ordered = df.sort_values("time", kind="stable")
    keys = [seed_keys(ordered[c]) if c == "seed" else ordered[c] for c in by] or [np.zeros(len(ordered))]
    latest = ordered.groupby(keys)["run_id"].transform("last")
    return df[latest.reindex(df.index) == df["run_id"]]


# ---------------------------------------------------------------------------------------------- averages
def main_metric_rows(run: pd.DataFrame) -> pd.DataFrame:
    """The main-metric records of one run's held-out tasks (every task type of :data:`TASK_TYPES`)."""
    rows = run[run["task"].isin(TASK_TYPES)].copy()
    return rows[rows["metric"] == rows["task"].map(MAIN_METRIC)]


def full_dim(run: pd.DataFrame) -> int:
    """The largest dim of one run's main-metric records (the model's full dim)."""
    return int(main_metric_rows(run)["dim"].max())


def dataset_means(tasks: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Mean of ``columns`` over each data set's tasks: index (task, dataset), sorted (the order in which
    :func:`type_means` adds them up)."""
    return tasks.groupby(["task", "dataset"])[list(columns)].mean()


def type_means(datasets: pd.DataFrame) -> dict[str, pd.Series]:
    """{task type: mean of :func:`dataset_means` rows over its data sets}, in :data:`TASK_TYPES` order."""
    present = set(datasets.index.get_level_values(0))
    return {t: datasets.loc[t].mean() for t in TASK_TYPES if t in present}


def overall_mean(types: Mapping[str, Any]) -> Any:
    """The mean of the task-type averages."""
    return sum(types.values()) / len(types)


def type_averages(run: pd.DataFrame, dim: int | None = None, precision: str = "float32") -> dict[str, float]:
    """{task type: mean over data sets, "overall": mean over types} of one run's main metric at
    (``dim``, default the full dim; ``precision``); {} when the run has no main-metric records."""
    rows = main_metric_rows(run)
    if rows.empty:
        return {}
    dim = full_dim(run) if dim is None else dim
    rows = rows[(rows["dim"] == dim) & (rows["precision"] == precision)]
    out = {t: float(v["value"]) for t, v in type_means(dataset_means(rows, ["value"])).items()}
    if out:
        out["overall"] = float(overall_mean(out))
    return out


# ---------------------------------------------------------------------------------------------- summary table
def _task_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per task: main metric at float32/binary/int8 full dim and float32 smallest dim."""
    rows = []
    keys = ["task", "dataset", "task_name"]
    for (task, dataset, name), g in df.groupby(keys, sort=False, dropna=False):
        g = g[g["metric"] == MAIN_METRIC.get(task, "")]
        if g.empty:
            continue
        full, small = int(g["dim"].max()), int(g["dim"].min())

        def value(dim: int, precision: str, g=g) -> float:
            v = g.loc[(g["dim"] == dim) & (g["precision"] == precision), "value"]
            return float(v.iloc[0]) if len(v) else float("nan")

        seconds = g["eval_seconds"].iloc[0] if "eval_seconds" in g.columns else float("nan")
        cached = bool(g["cached_from"].notna().any()) if "cached_from" in g.columns else False
        rows.append(
            {
                "task": task,
                "dataset": dataset,
                "language": g["language"].iloc[0],
                "task_name": name,
                "metric": MAIN_METRIC[task],
                "full_dim": full,
                "score": value(full, "float32"),
                "binary": value(full, "binary"),
                "int8": value(full, "int8"),
                "min_dim": small,
                "min_dim_score": value(small, "float32"),
                "seconds": float(seconds) if seconds is not None else float("nan"),
                "cached": cached,
            }
        )
    return pd.DataFrame(rows)


def _mean_row(
    frame: pd.DataFrame,
    means: Mapping[str, float],
    level: str,
    task: str,
    dataset: str | None,
    name: str,
    metric: str | None,
) -> dict:
    """One aggregate row of ``frame``'s rows: ``means`` of the value columns, summed seconds, any-cached."""
    return {
        "level": level,
        "task": task,
        "dataset": dataset,
        "language": None,
        "task_name": name,
        "metric": metric,
        "full_dim": frame["full_dim"].iloc[0],
        "min_dim": frame["min_dim"].iloc[0],
        "seconds": frame["seconds"].sum(),
        "cached": bool(frame["cached"].any()),
        **{c: means[c] for c in SUMMARY_COLUMNS},
    }


def summarise(records: Iterable[Mapping] | pd.DataFrame) -> pd.DataFrame:
    """Main-metric table of one run's records, with data-set means, task-type and overall averages.

    Rows (``level`` column): ``task`` (one per task), ``dataset`` (the mean over a data set's tasks,
    only where it has several, e.g. chatterbot's languages), ``type`` (mean over the task type's data
    sets, each counted once), ``overall`` (mean of the task-type averages). Value columns:
    ``score`` (float32, full dim), ``binary`` and ``int8`` (full dim), ``min_dim_score`` (float32 at
    the smallest evaluated dim ``min_dim``), ``binary_drop`` / ``int8_drop`` / ``min_dim_drop``
    = (score - value) / score, and ``seconds`` (per-task wall time; summed for averages).
    """
    df = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame([dict(r) for r in records])
    if "run_id" in df.columns and df["run_id"].nunique() > 1:
        raise ValueError(
            f"summarise takes one run's records; got runs {sorted(df['run_id'].unique())[:5]} "
            "(filter first, e.g. store.read(run_id=...))"
        )
    if df.empty:
        return pd.DataFrame(columns=["level", "task", "dataset", "language", "task_name", *SUMMARY_COLUMNS])
    if "task_name" not in df.columns:
        df["task_name"] = df["task"] + "/" + df["dataset"].astype(str) + "/" + df["language"].astype(str)
    tasks = _task_rows(df)
    tasks.insert(0, "level", "task")
    datasets = dataset_means(tasks, SUMMARY_COLUMNS)
    types = type_means(datasets)
    out = []
    type_rows = []
    for task_type, type_mean in types.items():
        t = tasks[tasks["task"] == task_type]
        dataset_rows = []
        for dataset, g in t.groupby("dataset", sort=False):
            out.append(g)
            row = _mean_row(
                g,
                datasets.loc[(task_type, dataset)],
                "dataset",
                task_type,
                dataset,
                f"{task_type}/{dataset} (mean of {len(g)})",
                MAIN_METRIC[task_type],
            )
            dataset_rows.append(row)
            if len(g) > 1:
                out.append(pd.DataFrame([row]))
        d = pd.DataFrame(dataset_rows)
        type_row = _mean_row(
            d,
            type_mean,
            "type",
            task_type,
            None,
            f"{task_type} average ({len(d)} datasets)",
            MAIN_METRIC[task_type],
        )
        type_rows.append(type_row)
        out.append(pd.DataFrame([type_row]))
    all_types = pd.DataFrame(type_rows)
    overall = overall_mean(types)
    name = f"overall (mean of {len(all_types)} task types)"
    out.append(pd.DataFrame([_mean_row(all_types, overall, "overall", "overall", None, name, None)]))
    table = pd.concat(out, ignore_index=True)
    for col, drop in (("binary", "binary_drop"), ("int8", "int8_drop"), ("min_dim_score", "min_dim_drop")):
        table[drop] = (table["score"] - table[col]) / table["score"]
    return table


def format_summary(table: pd.DataFrame, title: str = "") -> str:
    """The summary as fixed-width text: values x 100, drops in %, per-task seconds."""
    if table.empty:
        return f"{title}\n(no results)"
    full, small = int(table["full_dim"].iloc[0]), int(table["min_dim"].iloc[0])
    header = (
        f"{'task':44s} {'metric':10s} {'f32@' + str(full):>9s} {'bin@' + str(full):>9s} "
        f"{'int8@' + str(full):>9s} {'f32@' + str(small):>9s} {'bin drop':>9s} {'seconds':>8s}"
    )
    lines = [title, header, "-" * len(header)] if title else [header, "-" * len(header)]

    def fmt(v: Any, scale: float = 100.0, spec: str = "9.2f") -> str:
        return f"{v * scale:{spec}}" if v is not None and v == v else f"{'-':>{spec.split('.')[0]}}"

    for r in table.to_dict(orient="records"):
        if r["level"] == "overall":
            lines.append("=" * len(header))
        label = r["task_name"] if r["level"] == "task" else f"== {r['task_name']}"
        label += " *" if r["cached"] and r["level"] == "task" else ""
        lines.append(
            f"{label[:44]:44s} {str(r['metric'] or ''):10s} {fmt(r['score'])} {fmt(r['binary'])} "
            f"{fmt(r['int8'])} {fmt(r['min_dim_score'])} {fmt(r['binary_drop'], 100, '8.1f')}% "
            f"{fmt(r['seconds'], 1, '8.1f')}"
        )
        if r["level"] == "type":
            lines.append("")
    if table["cached"].any():
        lines.append("* reused from the results store (seconds: where it was computed)")
    return "\n".join(lines)
