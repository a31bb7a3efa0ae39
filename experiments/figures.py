"""The ablation figures, drawn with matplotlib (Agg backend: files only, no display) from the frames
experiments/tables.py computes: overall score against Matryoshka dim (``truncation_curve``), float32 vs
int8 vs binary per experiment (``precision_bars``) and dev retrieval against training step
(``dev_curves``); every value x100 with a band or error bar of ± the seed std where a row has several seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def save_line_plot(fig: plt.Figure, ax: plt.Axes, xlabel: str, ylabel: str, path: Path) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def spread_band(ax: plt.Axes, xs: Sequence, mean: pd.Series, std: pd.Series | None, **kw) -> None:
    """A line of ``mean`` x100 and, where ``std`` is known (several seeds), a band of mean ± std."""
    line = ax.plot(xs, mean.to_numpy() * 100, **kw)[0]
    if std is not None:
        std = std.reindex(mean.index).to_numpy(dtype=float) * 100
        if (~pd.isna(std)).any():
            low, high = mean.to_numpy() * 100 - std, mean.to_numpy() * 100 + std
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)


def truncation_curve(
    dims: pd.DataFrame, path: Path, precision: str = "float32", spread: pd.DataFrame | None = None
) -> None:
    """Overall score against Matryoshka dim, one line per row of a ``dim_table`` (seed mean); a band of
    ± the seed std (``spread``: the ``dim_table`` of ``stat="std"``) where a row has several seeds."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for exp, row in dims.iterrows():
        row = row.dropna()
        std = spread.loc[exp] if spread is not None and exp in spread.index else None
        spread_band(ax, row.index, row, std, marker="o", label=exp)
    ax.set_xscale("log", base=2)
    save_line_plot(
        fig,
        ax,
        "embedding dim (Matryoshka truncation)",
        f"overall average ({precision}) x 100 (± seed std)",
        path,
    )


def precision_bars(table: pd.DataFrame, path: Path) -> None:
    """Float vs int8 vs binary overall average per experiment (seed mean), error bars ± the seed std."""
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.27
    xs = range(len(table))
    for k, (name, col) in enumerate(
        [("float32", "float/overall"), ("int8", "int8/overall"), ("binary", "binary/overall")]
    ):
        std = table[f"{col}_std"] * 100 if f"{col}_std" in table else None
        ax.bar([x + (k - 1) * width for x in xs], table[col] * 100, width, yerr=std, capsize=2, label=name)
    ax.set_xticks(list(xs), table["experiment"], rotation=20, fontsize=7, ha="right")
    ax.set_ylabel("overall average x 100 (± seed std)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def dev_curves(
    steps: pd.DataFrame,
    teacher: float | None,
    path: Path,
    metric: str = "ndcg@10",
    spread: pd.DataFrame | None = None,
) -> None:
    """Dev-set retrieval score against training step, one line per row of a ``curve_table`` (seed
    mean) with a band of ± the seed std (``spread``) where it has several seeds; the teacher's level
    dashed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for exp, row in steps.iterrows():
        row = row.dropna()
        std = spread.loc[exp] if spread is not None and exp in spread.index else None
        spread_band(ax, row.index, row, std, marker=".", label=exp)
    if teacher is not None:
        ax.axhline(teacher * 100, color="gray", linestyle="--", label="teacher")
    save_line_plot(fig, ax, "training step", f"dev {metric} x 100 (± seed std)", path)
