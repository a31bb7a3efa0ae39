"""The run lifecycle's start-of-run checks (``jina5.runs.lifecycle``)."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pytest
from helpers import CONF_DIR, run_cfg

from jina5.runs.lifecycle import Run


def start(tmp_path, num_nodes: int) -> None:
    trainer = SimpleNamespace(num_nodes=num_nodes, is_global_zero=True, callbacks=[], loggers=[])
    Run(run_cfg(tmp_path)).start(trainer)


@pytest.mark.parametrize("cache", ["/tmp/jina5-cache", "/dev/shm/jina5", "/var/tmp/j5"])
def test_multi_node_run_warns_of_a_node_local_cache(tmp_path, monkeypatch, caplog, cache):
    """Every node's ranks read the teacher vectors rank 0 stores: a cache under /tmp is one per node."""
    monkeypatch.setenv("JINA5_CACHE", cache)
    with caplog.at_level(logging.WARNING, logger="jina5.runs.lifecycle"):
        start(tmp_path, num_nodes=2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "trainer.num_nodes=2" in warnings[0] and cache in warnings[0] and "JINA5_CACHE" in warnings[0]
    assert "node-local" in warnings[0] and "shared file system" in warnings[0]


@pytest.mark.parametrize("num_nodes, cache", [(1, "/tmp/jina5-cache"), (2, "/shared/project/jina5")])
def test_no_cache_warning_on_one_node_or_a_shared_path(tmp_path, monkeypatch, caplog, num_nodes, cache):
    monkeypatch.setenv("JINA5_CACHE", cache)
    with caplog.at_level(logging.WARNING, logger="jina5.runs.lifecycle"):
        start(tmp_path, num_nodes=num_nodes)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


EXPERIMENTS = sorted(
    p.relative_to(CONF_DIR / "experiment").with_suffix("").as_posix()
    for p in (CONF_DIR / "experiment").rglob("*.yaml")
)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_under_debug_smoke_averages_with_a_step_its_run_reaches(tmp_path, experiment):
    """Issue 23, item 7: ``experiment=adapter/retrieval debug=smoke`` failed: the smoke's 10 steps end
    before the experiment's ``adapter.average_with=step=100``. A smoke run of an averaging experiment
    now averages with a step it reaches (``smoke.average_with``, conf/debug/smoke.yaml), and the others do
    not average."""
    cfg = run_cfg(tmp_path, f"experiment={experiment}", "debug=smoke", small_data=False)
    plain = run_cfg(tmp_path, f"experiment={experiment}", small_data=False)
    callbacks = Run(cfg).callbacks()  # raised for the averaging experiments
    averages = (plain.get("adapter") or {}).get("average_with") is not None
    assert [type(c).__name__ for c in callbacks] == (["SaveAtSteps"] if averages else [])
    if averages:
        assert 0 < callbacks[0].steps[0] < cfg.trainer.max_steps


def test_an_averaging_step_past_the_run_names_an_override_that_works(tmp_path):
    """The error for a step the run never reaches names overrides to use instead; each works (the
    obvious ``adapter.average_with=step=5`` is a Hydra grammar error: quoted, it works too)."""
    with pytest.raises(ValueError) as err:
        Run(run_cfg(tmp_path, "experiment=adapter/retrieval", "trainer.max_steps=10")).callbacks()
    message = str(err.value)
    assert message.startswith(
        "adapter.average_with=step=100 must be a step in (0, trainer.max_steps=10): set"
    )
    ways = message.split(": set ", 1)[1]
    overrides = re.findall(r"adapter\.average_with=\w+|'adapter\.average_with=\"step=n\"'", ways)
    assert overrides == [
        "adapter.average_with=5",
        "adapter.average_with=null",
        "'adapter.average_with=\"step=n\"'",
    ]
    for override in [
        *overrides[:2],
        'adapter.average_with="step=5"',
    ]:  # the quoted one as the shell hands it over
        cfg = run_cfg(tmp_path, "experiment=adapter/retrieval", "trainer.max_steps=10", override)
        Run(cfg).callbacks()
