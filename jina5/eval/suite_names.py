"""Which evaluation suite a run was scored on, so that tables never put runs of two suites side by side.

A suite is the evaluation config a run was scored with (``conf/eval/<file>.yaml`` and any
overrides). Scores of two suites are not comparable (other data sets, caps, dims), so the latest-run
rule (:func:`jina5.eval.summary.latest_runs`) keeps the runs of one suite only. A run's **suite id**:

- **explicit** (every run evaluated since ``eval.suite`` exists): ``eval.suite``, the suite file's name
  (``default``, ``smoke``), and, where a sweep narrows it (``eval_overrides`` in
  experiments/sweeps.yaml, e.g. Table 5's retrieval-only evaluation), ``eval.variant``::

      suite id = suite                  (variant null)    e.g. default, smoke
               = suite + "/" + variant                    e.g. default/retrieval, smoke/retrieval

- **fallback** (runs stored before ``eval.suite`` existed): the id of the known suite whose scoring
  settings have the same :func:`settings_fingerprint` (the suite files of ``conf/eval/``, plus any
  ``known`` the caller adds, e.g. the sweeps' variants), else ``unnamed-<first 8 hex digits>``;
- **None**: a run without an evaluation config (training records only: dev curves, wall time).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from jina5.eval.config import plain

DEFAULT_SUITE = "default"
# eval keys that name the suite or only change how fast it runs, not its scores
NON_SCORING_KEYS = ("suite", "variant", "batch_size", "threads")


def explicit_suite_id(eval_cfg: Mapping[str, Any]) -> str | None:
    """``suite`` or ``suite/variant`` of an evaluation config; None when it has no ``suite`` key."""
    suite = eval_cfg.get("suite")
    if not suite:
        return None
    variant = eval_cfg.get("variant")
    return f"{suite}/{variant}" if variant else str(suite)


def settings_fingerprint(eval_cfg: Mapping[str, Any]) -> str:
    """sha256 (hex) of an evaluation config without :data:`NON_SCORING_KEYS` (canonical JSON)."""
    settings = {k: v for k, v in plain(eval_cfg).items() if k not in NON_SCORING_KEYS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def composed_eval(overrides: Sequence[str] = ()) -> dict:
    """The evaluation config (``eval`` node of ``conf/eval.yaml``) composed with ``overrides``
    (e.g. ``["eval=smoke", "eval.dims=[]"]``), as a plain dict."""
    from jina5.conf import compose

    return plain(compose(["model=none", *overrides], "eval").eval)


def suite_of(overrides: Sequence[str] = ()) -> str:
    """The suite id that a run evaluated with ``overrides`` is filed under."""
    cfg = composed_eval(overrides)
    got = explicit_suite_id(cfg)
    if got is None:
        raise ValueError("the evaluation config has no `suite` key (conf/eval/default.yaml sets it)")
    return got


@functools.cache
def named_suites() -> dict[str, str]:
    """{settings fingerprint: suite id} of every suite file of ``conf/eval/``, as composed today."""
    from jina5.conf import CONF_DIR

    out = {}
    for path in sorted((CONF_DIR / "eval").glob("*.yaml")):
        cfg = composed_eval([f"eval={path.stem}"])
        out[settings_fingerprint(cfg)] = explicit_suite_id(cfg) or path.stem
    return out


def run_suite_id(config: Any, known: Mapping[str, str] | None = None) -> str | None:
    """The suite id of a run from its stored ``config`` (module docstring). ``known``: more {settings
    fingerprint: suite id} for the fallback, checked after :func:`named_suites`."""
    eval_cfg = config.get("eval") if isinstance(config, Mapping) else None
    if not isinstance(eval_cfg, Mapping) or not eval_cfg:
        return None
    explicit = explicit_suite_id(eval_cfg)
    if explicit is not None:
        return explicit
    fingerprint = settings_fingerprint(eval_cfg)
    return {**(known or {}), **named_suites()}.get(fingerprint, f"unnamed-{fingerprint[:8]}")


def run_suites(df: pd.DataFrame, known: Mapping[str, str] | None = None) -> pd.Series:
    """The suite id of each row's run (:func:`run_suite_id` of its ``config``, once per run_id), or None;
    the frame's ``suite`` column where it already has one."""
    if "suite" in df.columns:
        return df["suite"]
    if df.empty or "config" not in df.columns:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    first = df.drop_duplicates("run_id", keep="last")
    by_run = {
        run: run_suite_id(config, known) for run, config in zip(first["run_id"], first["config"], strict=True)
    }
    return df["run_id"].map(by_run).astype(object)


def with_suites(df: pd.DataFrame, known: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``df`` with its ``suite`` column (:func:`run_suites`), computed once for the readers that follow."""
    out = df.copy()
    out["suite"] = run_suites(df.drop(columns=["suite"], errors="ignore"), known)
    return out
