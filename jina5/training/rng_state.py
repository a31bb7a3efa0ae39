"""The random generators a checkpoint carries, so that dropout masks after a resume match an unbroken run
(Lightning saves none): torch's CPU generator, every CUDA device's, numpy's and Python's.

Plain types and tensors only, so ``weights_only`` loading works. Under DDP the checkpoint holds rank 0's
states, which every rank restores.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_states() -> dict:
    """{torch, numpy, python[, cuda]}: the generators' states now (``cuda``: one per device, when CUDA is
    available; dropout on the GPU draws from them)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = list(torch.cuda.get_rng_state_all())
    return states


def restore_rng_states(states: dict | None) -> None:
    """Set the generators to ``states`` (from :func:`rng_states`; None: a checkpoint without them)."""
    if not states:
        return
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        # the saved devices this host has (one state per device, in device order)
        torch.cuda.set_rng_state_all(states["cuda"][: torch.cuda.device_count()])
