"""The run lifecycle's start-of-run checks (``jina5.runs.lifecycle``)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from helpers import run_cfg

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
