"""Every table and figure of the ablations, rebuilt from the results store alone (no retraining).

    python experiments/tables.py                        # every sweep the store has results for
    python experiments/tables.py --sweep default --out results/ablation

Aggregation (one run = the latest evaluation of one (experiment, seed)): per task the main metric
(nDCG@10, Spearman, accuracy, V-measure) at a (dim, precision); tasks of one data set (chatterbot's
languages) are averaged first; a task type is the mean over its data sets; ``overall`` is the mean
of the task-type averages. Over seeds: mean and sample std; two regimes whose means of the sweep's
ranking value (``rank_by``, e.g. the overall average) differ by less than the larger of their stds are
reported as a tie.

What each sweep's tables show (columns, ranking value, the paper's numbers, a stage-1 vs adapter
comparison) is declared in experiments/sweeps.yaml; this module only knows how to build them.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from jina5.eval.store import ResultsStore  # noqa: E402
from jina5.eval.summary import latest_runs, main_metric_rows, seed_keys, type_averages  # noqa: E402
from jina5.run_config import compose  # noqa: E402

SWEEPS_FILE = Path(__file__).with_name("sweeps.yaml")


def load_sweeps() -> dict:
    """experiments/sweeps.yaml: {sweep: its declaration (experiments, baselines, table layout, ...)}."""
    return yaml.safe_load(SWEEPS_FILE.read_text())


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


def ties(table: pd.DataFrame, col: str = "float/overall") -> dict[str, str]:
    """Mark each experiment 'best', 'tie' (within the larger std of it and the best) or ''."""
    if table.empty or col not in table:
        return {}
    best = table.loc[table[col].idxmax()]
    out = {}
    for _, r in table.iterrows():
        spreads = [
            v for v in (r.get(f"{col}_std"), best.get(f"{col}_std")) if v is not None and not math.isnan(v)
        ]
        spread = max(spreads) if spreads else math.nan
        if r["experiment"] == best["experiment"]:
            out[r["experiment"]] = "best"
        elif not math.isnan(spread) and best[col] - r[col] < spread:
            out[r["experiment"]] = "tie"
        else:
            out[r["experiment"]] = ""
    return out


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
    table: pd.DataFrame, columns: Sequence[tuple[str, str]], reference: str, candidate: str
) -> str:
    """A markdown table of two experiments of ``table``: one row per (header, value column), with the
    ``reference``'s and the ``candidate``'s seed mean (± std) and ``delta`` = candidate - reference."""
    rows = table.set_index("experiment").reindex([reference, candidate])
    lines = [f"| task type | {reference} | {candidate} | delta |", "|---|---|---|---|"]
    for header, col in columns:
        (ref, cand), (ref_std, cand_std) = (
            rows.get(c, pd.Series(math.nan, index=rows.index)) for c in (col, f"{col}_std")
        )
        delta = cand - ref
        lines.append(
            f"| {header} | {fmt(ref, ref_std)} | {fmt(cand, cand_std)} | "
            + ("-" if math.isnan(delta) else f"{delta * 100:+.2f}")
            + " |"
        )
    return "\n".join(lines)


def dim_table(df: pd.DataFrame, experiments: Sequence[str], precision: str = "float32") -> pd.DataFrame:
    """Overall average (seed mean) at every evaluated Matryoshka dim: one row per experiment, one column per dim."""
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
        rows[exp] = per_seed.mean()
    return pd.DataFrame(rows).T


def curve_table(df: pd.DataFrame, experiments: Sequence[str], metric: str = "ndcg@10") -> pd.DataFrame:
    """Dev ``metric`` (seed mean) at every checked step: one row per experiment, one column per step."""
    rows = {}
    for exp in experiments:
        curve = df[(df["experiment"] == exp) & (df["task"] == "dev_curve") & (df["metric"] == metric)]
        if not curve.empty:
            rows[exp] = curve.groupby(curve["step"].astype(int))["value"].mean()
    return pd.DataFrame(rows).T


def wide_markdown(table: pd.DataFrame, corner: str, every: int = 1) -> str:
    """A markdown table of a (row label x numeric column) frame, values x100; every ``every``-th column
    (and the last) shown."""
    cols = [c for i, c in enumerate(table.columns) if i % every == 0 or i == len(table.columns) - 1]
    lines = ["| " + " | ".join([corner, *map(str, cols)]) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, row in table.iterrows():
        lines.append("| " + " | ".join([str(name), *(fmt(row[c], math.nan) for c in cols)]) + " |")
    return "\n".join(lines)


def save_line_plot(fig: plt.Figure, ax: plt.Axes, xlabel: str, ylabel: str, path: Path) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def truncation_curve(dims: pd.DataFrame, path: Path, precision: str = "float32") -> None:
    """Overall score against Matryoshka dim, one line per row of a ``dim_table``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for exp, row in dims.iterrows():
        row = row.dropna()
        ax.plot(row.index, row.to_numpy() * 100, marker="o", label=exp)
    ax.set_xscale("log", base=2)
    save_line_plot(
        fig, ax, "embedding dim (Matryoshka truncation)", f"overall average ({precision}) x 100", path
    )


def precision_bars(table: pd.DataFrame, path: Path) -> None:
    """Float vs int8 vs binary overall average per experiment."""
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.27
    xs = range(len(table))
    for k, (name, col) in enumerate(
        [("float32", "float/overall"), ("int8", "int8/overall"), ("binary", "binary/overall")]
    ):
        ax.bar([x + (k - 1) * width for x in xs], table[col] * 100, width, label=name)
    ax.set_xticks(list(xs), table["experiment"], rotation=20, fontsize=7, ha="right")
    ax.set_ylabel("overall average x 100")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def teacher_dev_level(df: pd.DataFrame, experiments: Sequence[str], metric: str = "ndcg@10") -> float | None:
    """The teacher's dev ``metric`` on the same dev pairs (logged as ``val/teacher_<metric>``), or None."""
    rows = df[
        (df["task"] == "dev_curve")
        & (df["metric"] == f"teacher_{metric}")
        & df["experiment"].isin(experiments)
    ]
    return float(rows["value"].mean()) if len(rows) else None


def dev_curves(steps: pd.DataFrame, teacher: float | None, path: Path, metric: str = "ndcg@10") -> None:
    """Dev-set retrieval score against training step, one line per row of a ``curve_table``; the
    teacher's level dashed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for exp, row in steps.iterrows():
        row = row.dropna()
        ax.plot(row.index, row.to_numpy() * 100, marker=".", label=exp)
    if teacher is not None:
        ax.axhline(teacher * 100, color="gray", linestyle="--", label="teacher")
    save_line_plot(fig, ax, "training step", f"dev {metric} x 100", path)


def reference_names(spec: dict) -> list[str]:
    """The rows that frame a sweep's trained regimes: its baselines and its stage-1 run (stage 2)."""
    return [*spec.get("baselines", []), *([spec["stage1"]["label"]] if spec.get("stage1") else [])]


def regime_names(spec: dict) -> list[str]:
    """The rows of a sweep's tables: its references, then its trained regimes (the combined adapters of
    stage 2 stand for the separate adapter runs)."""
    trained = [spec["combine"]] if spec.get("combine") else [row.label for row in sweep_rows(spec)]
    return [*reference_names(spec), *trained]


def main_table(table: pd.DataFrame, layout: dict, references: Sequence[str]) -> list[str]:
    """The lines of a sweep's main table (``layout``: sweeps.yaml's ``table``); ``references`` (the
    baselines) frame the trained rows and take no part in the ``vs best`` ranking."""
    columns = list(layout["columns"].items())
    if layout.get("compare"):
        body = comparison_markdown(table, columns, *layout["compare"])
    else:
        extra = {}
        if layout.get("rank_by"):
            extra["vs best"] = ties(table[~table["experiment"].isin(references)], layout["rank_by"])
        if layout.get("paper"):
            extra["paper"] = layout["paper"]
        body = markdown(table, columns, extra)
    return [layout["caption"], "", body, ""]


def build(store: str | Path, sweep: str, out: str | Path) -> dict:
    """Write ``summary.md``, ``summary.json`` and the figures of ``sweep`` into ``out``; returns the json."""
    spec = load_sweeps()[sweep]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = latest_runs(ResultsStore(store).read())
    curves = [row.label for row in sweep_rows(spec)]
    names = regime_names(spec)
    table = regime_table(df, names) if not df.empty else pd.DataFrame()
    lines = [f"# {spec['title']}", ""]
    result: dict = {"sweep": sweep, "regimes": {}}
    if "float/overall" in table.columns:  # some run has held-out scores (figure3's runs have only curves)
        if spec.get("table"):
            lines += main_table(table, spec["table"], reference_names(spec))
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
        truncation_curve(dims, out / "truncation.png")
        truncation_curve(dim_table(df, names, "binary"), out / "truncation_binary.png", precision="binary")
        precision_bars(table, out / "precision.png")
        lines += ["![truncation](truncation.png) ![precision](precision.png)", ""]
    if not df.empty and (df["task"] == "dev_curve").any():
        steps = curve_table(df, curves)
        teacher = teacher_dev_level(df, curves)
        dev_curves(steps, teacher, out / "dev_curves.png")
        if not steps.empty:
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
        lines += ["![dev curves](dev_curves.png)", ""]
    (out / "summary.md").write_text("\n".join(lines))
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=float))
    return result


@functools.cache
def experiment_name(experiment_config: str) -> str:
    """Config path (``ablation/combined``) -> the ``experiment_name`` its runs are stored under
    (``combined``), read from the composed training config."""
    return compose([f"experiment={experiment_config}"]).experiment_name


def experiment_names(experiment_configs: Sequence[str]) -> list[str]:
    return [experiment_name(e) for e in experiment_configs]


@dataclass(frozen=True)
class Row:
    """One trained row of a sweep: an experiment config, the overrides of its grid point, its label."""

    experiment: str
    overrides: tuple[str, ...] = ()
    label: str = ""


def sweep_rows(spec: dict) -> list[Row]:
    """A sweep's trained rows: one per experiment config, or, with a ``grid`` ({config key: [values]}),
    one per experiment and grid point, each in its own run dir ``<experiment_name>-<key><value>-seed<n>``
    (e.g. ``pure_distill-lr1e-5``, the label it is stored and tabulated under)."""
    grid = spec.get("grid") or {}
    if len(grid) > 1:
        raise ValueError(f"sweeps.yaml: a grid has one key, got {sorted(grid)}")
    rows = []
    for experiment in spec["experiments"]:
        name = experiment_name(experiment)
        if not grid:
            rows.append(Row(experiment, (), name))
            continue
        [(key, values)] = grid.items()
        short = key.rsplit(".", 1)[-1]
        for value in values:
            run_name = f"run_name=${{experiment_name}}-{short}{value}-seed${{seed}}"
            rows.append(Row(experiment, (f"{key}={value}", run_name), f"{name}-{short}{value}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="results/results.jsonl")
    ap.add_argument("--sweep", default=None, help="one sweep of experiments/sweeps.yaml (default: all)")
    ap.add_argument(
        "--out", default=None, help="output dir (default results/<sweep>, results/ablation for default)"
    )
    args = ap.parse_args()
    for sweep in [args.sweep] if args.sweep else list(load_sweeps()):
        out = args.out or default_out(sweep)
        build(args.store, sweep, out)
        print(Path(out, "summary.md").read_text())


def default_out(sweep: str) -> str:
    return "results/ablation" if sweep == "default" else f"results/{sweep}"


if __name__ == "__main__":
    main()
