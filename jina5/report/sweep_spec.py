"""What a sweep declares, read from experiments/sweeps.yaml: its trained rows (an experiment config, or
one per grid point), the names its runs are stored under, the reference rows that frame them, and where
its tables go. No results are read here (:mod:`jina5.report.tables` builds the tables, experiments/sweep.py
runs the sweep).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from jina5.conf import compose
from jina5.eval.suite_names import composed_eval, explicit_suite_id, settings_fingerprint

SWEEPS_FILE = Path(__file__).resolve().parents[2] / "experiments" / "sweeps.yaml"  # the checkout's


def load_sweeps() -> dict:
    """experiments/sweeps.yaml: {sweep: its declaration (experiments, baselines, table layout, ...)}."""
    return yaml.safe_load(SWEEPS_FILE.read_text())


@functools.cache
def experiment_name(experiment_config: str) -> str:
    """Config path (``ablation/combined``) -> the ``experiment_name`` its runs are stored under
    (``combined``), read from the composed training config."""
    return compose([f"experiment={experiment_config}"]).experiment_name


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


def reference_names(spec: dict) -> list[str]:
    """The rows that frame a sweep's trained regimes: its baselines and its stage-1 run (stage 2)."""
    return [*spec.get("baselines", []), *([spec["stage1"]["label"]] if spec.get("stage1") else [])]


def regime_names(spec: dict) -> list[str]:
    """The rows of a sweep's tables: its references, then its trained regimes (the combined adapters of
    stage 2 stand for the separate adapter runs)."""
    trained = [spec["combine"]] if spec.get("combine") else [row.label for row in sweep_rows(spec)]
    return [*reference_names(spec), *trained]


@functools.cache
def _suite(eval_overrides: tuple[str, ...]) -> tuple[str, str]:
    """(suite id, settings fingerprint) of the evaluation config composed with ``eval_overrides``."""
    cfg = composed_eval(eval_overrides)
    return explicit_suite_id(cfg) or "default", settings_fingerprint(cfg)


def sweep_suite(spec: dict, eval_overrides: tuple[str, ...] = ()) -> str:
    """The evaluation suite a sweep's runs are filed under and its tables read: ``default``, or
    ``default/<variant>`` where its ``eval_overrides`` name a variant (``eval.variant=retrieval``);
    ``eval_overrides``: more of them after the sweep's (``sweep.py --eval eval=smoke`` -> ``smoke``)."""
    return _suite((*spec.get("eval_overrides", []), *eval_overrides))[0]


def known_suites() -> dict[str, str]:
    """{settings fingerprint: suite id} of every sweep's evaluation as declared today: how runs stored
    before ``eval.suite`` existed are told apart (:func:`jina5.eval.suite_names.run_suite_id`)."""
    sweeps = [spec for spec in load_sweeps().values() if "experiments" in spec]
    return {fp: suite for suite, fp in (_suite(tuple(s.get("eval_overrides", []))) for s in sweeps)}


def default_out(sweep: str) -> str:
    """Where a sweep's tables and figures go: results/ablation for ``default``, else results/<sweep>."""
    return "results/ablation" if sweep == "default" else f"results/{sweep}"
