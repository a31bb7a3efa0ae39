"""Every table and figure of a sweep, rebuilt from the results store alone (no retraining):
``summary.md``, ``summary.json`` and the figures, in the sweep's output folder.

    python -m jina5.report.tables                        # every sweep the store has results for
    python -m jina5.report.tables --sweep default --out results/ablation

Suites: a table reads the runs of ONE evaluation suite (``--suite``, default the sweep's own: ``default``,
or ``default/<variant>`` for a sweep whose ``eval_overrides`` narrow it; :mod:`jina5.eval.suite_names`),
says so under its title, and names the runs of other suites it leaves out; suites are never mixed.

What each sweep's tables show (columns, ranking value, the paper's numbers, a stage-1 vs adapter
comparison) is declared in experiments/sweeps.yaml (:mod:`jina5.report.sweep_spec`); this module only puts
the parts together: the per-experiment frames (:mod:`jina5.report.aggregate`), the reference row and the
intervals and verdicts against it (:mod:`jina5.report.verdicts`), their markdown
(:mod:`jina5.report.markdown_tables`) and the figures (:mod:`jina5.report.figures`).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from jina5.eval.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED
from jina5.eval.machine import describe
from jina5.eval.store import ResultsStore
from jina5.eval.summary import latest_runs
from jina5.report.aggregate import curve_table, dim_table, regime_table, stored_rows, teacher_dev_level
from jina5.report.figures import (
    dev_curves,
    experiment_colours,
    figure_links,
    precision_points,
    truncation_curve,
)
from jina5.report.markdown_tables import main_table, suite_note, wide_markdown
from jina5.report.sweep_spec import (
    default_out,
    load_sweeps,
    reference_names,
    regime_names,
    sweep_rows,
    sweep_suite,
)
from jina5.report.verdicts import Significance, interval_json, table_intervals

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


# tasks of the records a training run files (jina5.runs.curves): its wall time and its curves
TRAINING_TASKS = ("training", "dev_curve", "training_curve")


def machines_note(df: pd.DataFrame, names: list[str], result: dict) -> list[str]:
    """Where the tabulated rows were evaluated: one line per distinct machine of their runs' configs
    (:mod:`jina5.eval.machine`; ``not recorded`` for runs stored before it was), into
    ``result["machines"]``. bf16 kernels round differently per CPU, so digits belong with their machine.
    A training run's own records (wall time, curves: filed from its logs) are no evaluation and name none."""
    rows = df[df["experiment"].isin(names) & ~df["task"].isin(TRAINING_TASKS)] if not df.empty else df
    seen: dict[str, dict | None] = {}
    for config in rows.drop_duplicates("run_id")["config"] if not rows.empty else []:
        info = config.get("machine") if isinstance(config, dict) else None
        seen.setdefault(describe(info) if info else "not recorded", info)
    result["machines"] = [info if info else {"cpu": "not recorded"} for info in seen.values()]
    if not seen:
        return []
    return [f"Evaluated on: {'; and on '.join(seen)}.", ""]


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
    stored = stored_rows(results)
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
    lines += machines_note(df, [*names, *curves], result)
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
