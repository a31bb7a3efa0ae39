"""A command process for the kill tests: ``python -m MODULE ARG...`` that pauses after the Nth call of a function.

    python tests/e2e/pause_child.py ROOT TARGET N MODULE ARG...

TARGET is ``module:function`` or ``module:Class.method``. When its Nth call has returned, the process
writes ``ROOT/paused`` (holding its PID), then waits until the file ``ROOT/go`` exists (at most 120 s):
the test kills it in between (tests/e2e/test_evaluate_cli.py, tests/unit/test_export.py).
"""

from __future__ import annotations

import functools
import importlib
import os
import runpy
import sys
import time
from pathlib import Path


def pause_after(root: Path, target: str, n: int) -> None:
    """Wrap ``target`` so that its ``n``-th call pauses the process once it has returned."""
    module, attr = target.split(":")
    *owners, name = attr.split(".")
    owner = importlib.import_module(module)
    for part in owners:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        nonlocal calls
        out = original(*args, **kwargs)
        calls += 1
        if calls == n:
            (root / "paused").write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while not (root / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return out

    setattr(owner, name, wrapped)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's jina5, as the tests use
    root, target, n, module, *args = sys.argv[1:]
    pause_after(Path(root), target, int(n))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
