"""Every table and figure of the ablations, rebuilt from the results store alone (no retraining).

    python experiments/tables.py                        # every sweep the store has results for
    python experiments/tables.py --sweep default --out results/ablation

Suites: a table reads the runs of ONE evaluation suite (``--suite``, default the sweep's own: ``default``,
or ``default/<variant>`` for a sweep whose ``eval_overrides`` narrow it; :mod:`jina5.eval.suite_names`),
says so under its title, and names the runs of other suites it leaves out; suites are never mixed.

Aggregation (one run = the latest evaluation of one (experiment, seed) in the suite): per task the main metric
(nDCG@10, Spearman, accuracy, V-measure) at a (dim, precision); tasks of one data set (chatterbot's
languages) are averaged first; a task type is the mean over its data sets; ``overall`` is the mean
of the task-type averages. Over seeds: mean and sample std.

Significance: every trained row is compared with the sweep's reference row (``reference``, default the
best row by ``rank_by``) by a paired bootstrap over the test items (:mod:`jina5.eval.bootstrap`,
``--resamples`` resamples, ``--bootstrap-seed``): the difference and its 95% percentile interval, and
``better`` / ``worse`` only when the interval excludes 0, else ``tie``. A row whose runs have no
per-item scores (an older store) shows ``no CI (re-evaluate)`` and falls back to the seed-std rule: a
``tie`` when the means differ by less than the larger of the two stds.

What each sweep's tables show (columns, ranking value, the paper's numbers, a stage-1 vs adapter
comparison) is declared in experiments/sweeps.yaml (read by experiments/sweep_spec.py); this module only
knows how to build them. The figures are drawn by experiments/figures.py.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from jina5.eval.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Interval,
    MissingItems,
    Replicates,
    difference,
    interval,
    row_replicates,
    run_items,
)
from jina5.eval.store import ResultsStore
from jina5.eval.suite_names import with_suites
from jina5.eval.summary import latest_runs, main_metric_rows, seed_keys, type_averages
from jina5.report.figures import (
    dev_curves,
    experiment_colours,
    figure_links,
    precision_points,
    truncation_curve,
)
from jina5.report.sweep_spec import (
    default_out,
    experiment_name,
    known_suites,
    load_sweeps,
    reference_names,
    regime_names,
    sweep_rows,
    sweep_suite,
)


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


def fmt(mean: float, std: float, scale: float = 100.0) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean * scale:.2f}" + ("" if std is None or math.isnan(std) else f" ± {std * scale:.2f}")


def ties(table: pd.DataFrame, col: str = "float/overall", reference: str | None = None) -> dict[str, str]:
    """The seed-std rule: mark the reference ``reference`` (default the best row by ``col``: ``best``),
    and each other row ``tie`` when its mean of ``col`` is within the larger of its and the reference's
    std of the reference's, else ''."""
    if (
        table.empty
        or col not in table
        or (reference is not None and reference not in set(table["experiment"]))
    ):
        return {}
    if reference is None:
        ref, mark = table.loc[table[col].idxmax()], "best"
    else:
        ref, mark = table[table["experiment"] == reference].iloc[0], "reference"
    out = {}
    for _, r in table.iterrows():
        spreads = [
            v for v in (r.get(f"{col}_std"), ref.get(f"{col}_std")) if v is not None and not math.isnan(v)
        ]
        spread = max(spreads) if spreads else math.nan
        if r["experiment"] == ref["experiment"]:
            out[r["experiment"]] = mark
        elif not math.isnan(spread) and abs(ref[col] - r[col]) < spread:
            out[r["experiment"]] = "tie"
        else:
            out[r["experiment"]] = ""
    return out


# ---------------------------------------------------------------------------------------------- significance
# The (dim, precision) of each prefix of run_summary's value keys (dim None: the run's full dim);
# ``binary_drop/<level>`` is binary - float32 of that level; other values (train_seconds) have no interval.
VALUE_SETTINGS = {
    "float": (None, "float32"),
    "binary": (None, "binary"),
    "int8": (None, "int8"),
    "dim128": (128, "float32"),
}


def value_terms(key: str) -> list[tuple[int, int | None, str, str]] | None:
    """(sign, dim, precision, level) terms whose signed sum is ``run_summary``'s value ``key``; None for
    a value without per-item scores."""
    prefix, _, level = key.partition("/")
    if prefix == "binary_drop" and level:
        return [(1, None, "binary", level), (-1, None, "float32", level)]
    if prefix in VALUE_SETTINGS and level:
        return [(1, *VALUE_SETTINGS[prefix], level)]
    return None


class Significance:
    """Paired bootstrap intervals between the rows of ``df`` (latest runs of ``store``); each row's
    replicates at a (dim, precision) are computed once (:func:`jina5.eval.bootstrap.row_replicates`)."""

    def __init__(
        self,
        store: ResultsStore,
        df: pd.DataFrame,
        resamples: int = DEFAULT_RESAMPLES,
        seed: int = DEFAULT_SEED,
    ) -> None:
        self.store, self.df, self.resamples, self.seed = store, df, resamples, seed
        self._rows: dict[tuple, Replicates | MissingItems] = {}

    def replicates(self, experiment: str, dim: int | None, precision: str) -> Replicates:
        """The row's replicates (raises :class:`MissingItems`)."""
        key = (experiment, dim, precision)
        if key not in self._rows:
            runs = self.df[self.df["experiment"] == experiment]
            try:
                seeds = [
                    run_items(self.store, g, dim, precision)
                    for _, g in runs.groupby(seed_keys(runs["seed"]), sort=True)
                ]
                self._rows[key] = row_replicates(seeds, self.resamples, self.seed)
            except MissingItems as e:
                self._rows[key] = e
        got = self._rows[key]
        if isinstance(got, MissingItems):
            raise got
        return got

    def interval(self, candidate: str, reference: str, key: str) -> Interval | str:
        """The interval of ``candidate`` - ``reference`` of the value ``key``, or why there is none
        (``no CI (...)``)."""
        terms = value_terms(key)
        if terms is None:
            return "no CI (not an item score)"
        try:
            total = 0.0
            for sign, dim, precision, level in terms:
                diff = difference(
                    self.replicates(candidate, dim, precision), self.replicates(reference, dim, precision)
                )
                if level not in diff:
                    raise MissingItems(f"no {level} results", "not evaluated")
                total = total + sign * diff[level]
        except MissingItems as e:
            return f"no CI ({e.hint})"
        return interval(total)

    def describe(self) -> str:
        return (
            f"paired bootstrap over test items, {self.resamples} resamples (seed {self.seed}), "
            "95% percentile interval"
        )


def interval_json(got: Interval | str) -> dict:
    """An interval for summary.json (6 decimals), or ``{"missing": why}``."""
    if isinstance(got, str):
        return {"missing": got}
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in got.as_dict().items()}


def reference_row(spec: dict, layout: dict, trained: pd.DataFrame) -> tuple[str | None, bool]:
    """(the row a table's trained rows are compared with, whether it is the ``rank_by`` best): the
    layout's ``compare[0]`` or ``reference`` (an experiment config or a row label), else the best
    trained row by ``rank_by``, else the first trained row."""
    if layout.get("compare"):
        return layout["compare"][0], False
    if layout.get("reference"):
        name = layout["reference"]
        return (experiment_name(name) if name in spec.get("experiments", []) else name), False
    if trained.empty:
        return None, False
    rank_by = layout.get("rank_by")
    if rank_by in trained and trained[rank_by].notna().any():
        return str(trained.loc[trained[rank_by].idxmax(), "experiment"]), True
    return str(trained["experiment"].iloc[0]), False


def interval_keys(layout: dict) -> list[str]:
    """The values that get a ``Δ [95% CI]`` column: the layout's ``intervals``, default its ``rank_by``."""
    if "intervals" in layout:
        return list(layout["intervals"] or [])
    return [layout["rank_by"]] if layout.get("rank_by") else []


def markdown(
    table: pd.DataFrame, columns: Sequence[tuple[str, str]], extra: dict[str, dict[str, str]] | None = None
) -> str:
    """A markdown table: one row per experiment; ``columns`` = (header, value column)."""
    extra = extra or {}
    heads = ["experiment", "seeds", *[h for h, _ in columns], *extra]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for _, r in table.iterrows():
        cells = [r["experiment"], str(int(r["seeds"]))]
        for _, col in columns:
            if col == "train_seconds":
                cells.append("-" if math.isnan(r[col]) else f"{r[col]:.0f}")
            else:
                cells.append(fmt(r.get(col, math.nan), r.get(f"{col}_std", math.nan)))
        cells += [extra[k].get(r["experiment"], "") for k in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_markdown(
    table: pd.DataFrame,
    columns: Sequence[tuple[str, str]],
    reference: str,
    candidate: str,
    intervals: dict[str, Interval | str] | None = None,
) -> str:
    """A markdown table of two experiments of ``table``: one row per (header, value column), with the
    ``reference``'s and the ``candidate``'s seed mean (± std) and ``delta`` = candidate - reference;
    with ``intervals`` ({value column: interval or why none}), its ``95% CI`` and ``verdict`` too."""
    rows = table.set_index("experiment").reindex([reference, candidate])
    heads = [
        "task type",
        reference,
        candidate,
        "delta",
        *(["95% CI", "verdict"] if intervals is not None else []),
    ]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for header, col in columns:
        (ref, cand), (ref_std, cand_std) = (
            rows.get(c, pd.Series(math.nan, index=rows.index)) for c in (col, f"{col}_std")
        )
        delta = cand - ref
        cells = [
            header,
            fmt(ref, ref_std),
            fmt(cand, cand_std),
            "-" if math.isnan(delta) else f"{delta * 100:+.2f}",
        ]
        if intervals is not None:
            got = intervals.get(col, "")
            if isinstance(got, Interval):
                cells += [f"[{got.low * 100:+.2f}, {got.high * 100:+.2f}]", got.verdict]
            else:
                cells += [got, ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


STAGE1_CURVE = {
    "teacher_cos": "dev teacher cosine",
    "ndcg@10": "dev nDCG@10",
    "teacher_sim_corr": "dev similarity agreement",
}


def stage1_curve(df: pd.DataFrame, label: str, result: dict) -> list[str]:
    """The stage-1 base's dev curves (x100, one row per metric of ``STAGE1_CURVE``): the teacher cosine
    cos(psi(s), t) it distils towards, retrieval nDCG@10, and the Spearman agreement of the student's own
    pairwise similarities with the teacher's (``val/teacher_sim_corr``); into ``result["stage1_curve"]``."""
    rows = {name: curve_table(df, [label], metric) for metric, name in STAGE1_CURVE.items()}
    rows = {name: t.iloc[0] for name, t in rows.items() if not t.empty}
    if not rows:
        return []
    table = pd.DataFrame(rows).T
    result["stage1_curve"] = {
        name: {int(k): v for k, v in row.dropna().items()} for name, row in table.iterrows()
    }
    return [
        f"Stage-1 base ({label}) against training step (Lightning's 0-based step), on the dev pairs (x100).",
        "",
        wide_markdown(table, "metric \\ step"),
        "",
    ]


def wide_markdown(table: pd.DataFrame, corner: str, every: int = 1) -> str:
    """A markdown table of a (row label x numeric column) frame, values x100; every ``every``-th column
    (and the last) shown."""
    cols = [c for i, c in enumerate(table.columns) if i % every == 0 or i == len(table.columns) - 1]
    lines = ["| " + " | ".join([corner, *map(str, cols)]) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, row in table.iterrows():
        lines.append("| " + " | ".join([str(name), *(fmt(row[c], math.nan) for c in cols)]) + " |")
    return "\n".join(lines)


def teacher_dev_level(df: pd.DataFrame, experiments: Sequence[str], metric: str = "ndcg@10") -> float | None:
    """The teacher's dev ``metric`` on the same dev pairs (logged as ``val/teacher_<metric>``), or None."""
    rows = df[
        (df["task"] == "dev_curve")
        & (df["metric"] == f"teacher_{metric}")
        & df["experiment"].isin(experiments)
    ]
    return float(rows["value"].mean()) if len(rows) else None


def table_intervals(
    table: pd.DataFrame, spec: dict, layout: dict, significance: Significance
) -> tuple[str | None, bool, dict[str, dict[str, Interval | str]]]:
    """(reference row, whether it is the rank_by best, {candidate row: {value: interval or why none}})
    of a sweep's main table: every trained row (``compare``: its candidate) against the reference, for
    every layout column and ``intervals`` value that has per-item scores."""
    trained = table[~table["experiment"].isin(reference_names(spec))]
    reference, best = reference_row(spec, layout, trained)
    present = set(table["experiment"])
    if reference not in present:
        return reference, best, {}
    candidates = [layout["compare"][1]] if layout.get("compare") else list(trained["experiment"])
    keys = [c for c in dict.fromkeys([*layout["columns"].values(), *interval_keys(layout)]) if value_terms(c)]
    rows = {
        exp: {key: significance.interval(exp, reference, key) for key in keys}
        for exp in candidates
        if exp in present and exp != reference
    }
    return reference, best, rows


def interval_cell(got: Interval | str | None) -> str:
    return got.format() if isinstance(got, Interval) else (got or "")


def main_table(
    table: pd.DataFrame,
    layout: dict,
    references: Sequence[str],
    reference: str | None = None,
    is_best: bool = False,
    intervals: dict[str, dict[str, Interval | str]] | None = None,
    method: str = "",
) -> list[str]:
    """The lines of a sweep's main table (``layout``: sweeps.yaml's ``table``); ``references`` (the
    baselines) frame the trained rows. With ``intervals`` (:func:`table_intervals`): a ``Δ <value>
    [95% CI]`` column per :func:`interval_keys` value and the verdict against ``reference`` (``vs best``
    when it is the rank_by best): the interval's where there is one, else the seed-std rule (:func:`ties`)."""
    columns = list(layout["columns"].items())
    intervals = intervals or {}
    note = []
    if layout.get("compare"):
        candidate = layout["compare"][1]
        body = comparison_markdown(table, columns, *layout["compare"], intervals.get(candidate, {}))
        note = [f"95% CI: {method}; `better` / `worse` only when it excludes 0, else `tie`.", ""]
    else:
        extra: dict[str, dict[str, str]] = {}
        headers = {col: header for header, col in columns}
        keys = interval_keys(layout)
        for key in keys:
            cells = {exp: interval_cell(got.get(key)) for exp, got in intervals.items()}
            extra[f"Δ {headers.get(key, key)} [95% CI]"] = {
                **cells,
                **({reference: "(reference)"} if reference else {}),
            }
        primary = layout.get("rank_by") or next(iter(keys), None)
        if primary and reference:
            rows = table[~table["experiment"].isin(references) | (table["experiment"] == reference)]
            fallback = ties(rows, primary, None if is_best else reference)
            extra["vs best" if is_best else f"vs {reference}"] = {
                exp: got.verdict if isinstance(got, Interval) else fallback.get(exp, "")
                for exp, got in {e: intervals.get(e, {}).get(primary) for e in fallback}.items()
            }
        if layout.get("paper"):
            extra["paper"] = layout["paper"]
        body = markdown(table, columns, extra)
        if keys and reference:
            note = [
                f"Δ: the row minus {reference} (x100), [95% CI]: {method}. A row is `better` / `worse` only"
                " when the interval excludes 0, else a `tie`; `no CI (re-evaluate)`: a run in the store has no"
                " per-item scores (its verdict falls back to the seed-std rule: a tie within the larger std).",
                "",
            ]
    return [layout["caption"], "", body, "", *note]


def suite_note(stored: pd.DataFrame, suite: str, rows: Sequence[str]) -> str:
    """The line under a table's title: the evaluation suite it reads, and how many runs of its ``rows`` in
    the store (``stored``, with its ``suite`` column) belong to other suites and are left out."""
    line = f"Evaluation suite: `{suite}` (every row is a run of this suite; suites are never mixed)."
    runs = stored[stored["experiment"].isin(rows)].drop_duplicates("run_id")
    others = runs[runs["suite"].notna() & (runs["suite"] != suite)]["suite"].value_counts()
    if len(others):
        left = ", ".join(f"{n} run(s) of `{other}`" for other, n in sorted(others.items()))
        line += f" Left out: {left} (`python experiments/tables.py --suite <suite>` tabulates another)."
    return line


def build(
    store: str | Path,
    sweep: str,
    out: str | Path,
    resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = DEFAULT_SEED,
    suite: str | None = None,
) -> dict:
    """Write ``summary.md``, ``summary.json`` and the figures of ``sweep`` into ``out``; returns the json.
    ``resamples`` / ``bootstrap_seed``: the paired bootstrap's (:mod:`jina5.eval.bootstrap`); ``suite``:
    the evaluation suite whose runs are tabulated (default the sweep's own, :func:`sweep_spec.sweep_suite`)."""
    spec = load_sweeps()[sweep]
    suite = suite or sweep_suite(spec)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = ResultsStore(store)
    stored = with_suites(results.read(), known_suites())
    df = latest_runs(stored, suite=suite)
    curves = [row.label for row in sweep_rows(spec)]
    names = regime_names(spec)
    colours = experiment_colours([*names, *curves, "teacher"])
    table = regime_table(df, names) if not df.empty else pd.DataFrame()
    lines = [f"# {spec['title']}", "", suite_note(stored, suite, [*names, *curves]), ""]
    result: dict = {"sweep": sweep, "suite": suite, "regimes": {}}
    figures: list[Path] = []
    if "float/overall" in table.columns:  # some run has held-out scores (figure3's runs have only curves)
        if spec.get("table"):
            significance = Significance(results, df, resamples, bootstrap_seed)
            reference, best, intervals = table_intervals(table, spec, spec["table"], significance)
            lines += main_table(
                table,
                spec["table"],
                reference_names(spec),
                reference,
                best,
                intervals,
                significance.describe(),
            )
            result["intervals"] = {
                "reference": reference,
                "method": significance.describe(),
                "rows": {
                    exp: {key: interval_json(got) for key, got in values.items()}
                    for exp, values in intervals.items()
                },
            }
        for _, r in table.iterrows():
            result["regimes"][r["experiment"]] = {
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in r.items()
                if k != "experiment"
            }
        dims = dim_table(df, names)
        if not dims.empty:
            lines += [
                "Overall average (x100, float32) at each Matryoshka dim.",
                "",
                wide_markdown(dims, "experiment \\ dim"),
                "",
            ]
            result["truncation"] = {
                exp: {int(d): v for d, v in row.dropna().items()} for exp, row in dims.iterrows()
            }
        for precision, name in (("float32", "truncation.png"), ("binary", "truncation_binary.png")):
            means = dims if precision == "float32" else dim_table(df, names, precision)
            if means.notna().any(axis=None):  # e.g. no binary curve where the suite scores float32 only
                figures.append(out / name)
                spread = dim_table(df, names, precision, stat="std")
                truncation_curve(means, figures[-1], precision, spread, colours)
        figures.append(out / "precision.png")
        precision_points(table, figures[-1], colours)
        lines += [figure_links(figures), ""]
    if not df.empty and (df["task"] == "dev_curve").any():
        steps = curve_table(df, curves)
        teacher = teacher_dev_level(df, curves)
        if not steps.empty:
            figures.append(out / "dev_curves.png")
            spread = curve_table(df, curves, stat="std")
            dev_curves(steps, teacher, figures[-1], spread=spread, colours=colours)
            every = max(1, len(steps.columns) // 10)
            ceiling = (
                f" The teacher on the same dev pairs: {teacher * 100:.2f}." if teacher is not None else ""
            )
            lines += [
                f"Dev retrieval nDCG@10 (x100) against training step (Lightning's 0-based step: 9 = after 10"
                f" optimizer steps).{ceiling}",
                "",
                wide_markdown(steps, "experiment \\ step", every),
                "",
            ]
            result["dev_curves"] = {
                exp: {int(k): v for k, v in row.dropna().items()} for exp, row in steps.iterrows()
            }
            lines += [figure_links(figures[-1:]), ""]
    if spec.get("stage1") and not df.empty:
        lines += stage1_curve(df, spec["stage1"]["label"], result)
    (out / "summary.md").write_text("\n".join(lines))
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=float))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="results/results.jsonl")
    ap.add_argument("--sweep", default=None, help="one sweep of experiments/sweeps.yaml (default: all)")
    ap.add_argument(
        "--out", default=None, help="output dir (default results/<sweep>, results/ablation for default)"
    )
    ap.add_argument(
        "--resamples", type=int, default=DEFAULT_RESAMPLES, help="paired bootstrap resamples per interval"
    )
    ap.add_argument("--bootstrap-seed", type=int, default=DEFAULT_SEED, help="seed of the bootstrap draws")
    ap.add_argument(
        "--suite",
        default=None,
        help="the evaluation suite to tabulate, e.g. smoke (default: each sweep's own, e.g. default)",
    )
    args = ap.parse_args()
    for sweep in [args.sweep] if args.sweep else list(load_sweeps()):
        out = args.out or default_out(sweep)
        build(args.store, sweep, out, args.resamples, args.bootstrap_seed, args.suite)
        print(Path(out, "summary.md").read_text())


if __name__ == "__main__":
    main()
