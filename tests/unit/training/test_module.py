"""EmbeddingModule's checkpoint hooks: the RNG states a resume restores."""

from __future__ import annotations

import random

import numpy as np
import torch
from helpers import run_cfg

from jina5.train import build


def test_checkpoint_round_trips_every_cuda_generator(tmp_path, monkeypatch):
    """A resume on a GPU repeats the dropout masks of an unbroken run only if the CUDA generators are
    saved and restored with the CPU one (all devices: stand-ins for two GPUs on this CPU host)."""
    module, _, _ = build(run_cfg(tmp_path))
    gpu_states = [torch.arange(8, dtype=torch.uint8), torch.arange(8, 16, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in gpu_states])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(list(states)))
    torch.manual_seed(7)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    path = tmp_path / "state.ckpt"
    torch.save(checkpoint, path)
    loaded = torch.load(path, weights_only=True)  # plain types and tensors only
    expected_cpu = torch.rand(3)  # what the CPU generator draws next from the saved state
    torch.manual_seed(0)
    module.on_load_checkpoint(loaded)
    assert torch.equal(torch.rand(3), expected_cpu)
    assert len(restored) == 1 and [s.tolist() for s in restored[0]] == [s.tolist() for s in gpu_states]


def test_checkpoint_without_cuda_keeps_no_cuda_state(tmp_path, monkeypatch):
    module, _, _ = build(run_cfg(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: (_ for _ in ()).throw(AssertionError))
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    assert sorted(checkpoint["rng_states"]) == ["numpy", "python", "torch"]  # as before: CPU runs unchanged
    state = (random.getstate(), np.random.get_state()[1].tolist())
    module.on_load_checkpoint(checkpoint)
    assert (random.getstate(), np.random.get_state()[1].tolist()) == state
