"""glibc's allocator kept from re-mapping large blocks (``jina5.training.allocator``): measured by the
minor page faults of re-allocating a 64 MiB tensor, in a fresh process each (the setting is
process-wide and has no undo)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jina5.training import allocator

pytestmark = pytest.mark.skipif(not allocator.is_glibc(), reason="glibc's mallopt (Linux with glibc)")

FAULTS = """
import json, resource, sys
import torch
from jina5.training import allocator
set_ = allocator.keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(16):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 << 20)  # 64 MiB, every page written
    del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"set": set_, "faults": faults}))
"""
PAGES = (64 << 20) // 4096  # of a 64 MiB block


def page_faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kept_blocks_are_reused_without_new_page_faults():
    """The first allocations map their pages (glibc's aligned allocation asks for a little more than
    the block it frees, so the heap grows a few times); from then on the freed pages are reused."""
    kept = page_faults("keep")
    assert kept["set"] is True
    assert kept["faults"][0] >= PAGES * 0.9
    assert max(kept["faults"][-4:]) < PAGES * 0.05


def test_by_default_each_large_block_is_mapped_afresh():
    """What the setting removes: glibc maps a block of 32 MiB or more afresh each time."""
    default = page_faults("default")
    assert min(default["faults"]) >= PAGES * 0.9


def test_off_glibc_it_is_a_no_op(monkeypatch):
    monkeypatch.setattr(allocator, "is_glibc", lambda: False)
    assert allocator.keep_freed_memory() is False
