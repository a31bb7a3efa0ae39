"""Shared fixtures: a private cache root per test session, and Hydra config composition."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Bundled models extract into a shared cache (once per machine); everything else is per session."""
    os.environ.setdefault("JINA5_CACHE", str(tmp_path_factory.mktemp("jina5-cache")))
    # fp32 unless a test asks for bf16: `precision: auto` would make results depend on the CPU's bf16 support
    os.environ.setdefault("JINA5_PRECISION", "fp32")
    yield
