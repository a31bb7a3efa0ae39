"""Count the reads of tensor values into Python (``int(t)``, ``t.item()``, ``.tolist()``, ``.cpu()``...):
on a GPU each one waits for the device (a host sync), so a hot path that must not sync shows 0 here."""

from __future__ import annotations

from torch.overrides import TorchFunctionMode

#: the Tensor methods that hand a value to the host (``cpu`` / ``numpy``: a copy the host waits for)
HOST_READS = frozenset({"__int__", "__float__", "__bool__", "__index__", "item", "tolist", "cpu", "numpy"})


class HostReads(TorchFunctionMode):
    """``with HostReads() as reads: ...``; ``reads.calls``: the host reads, in order, by method name."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))
