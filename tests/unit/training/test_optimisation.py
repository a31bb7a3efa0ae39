"""Optimisation settings: fused AdamW resolved by device (``optimizer.fused: null`` = auto), and the
finite-loss check read every N steps off CPU (no per-step host sync), still naming the first bad step."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from helpers import LossRecorder, compose, run_cfg
from hydra.utils import instantiate

import jina5.training.module
from jina5.train import train
from jina5.training.module import finite_check_interval
from jina5.training.optimizer import resolve_fused


def test_fused_auto_is_true_where_torch_has_fused_kernels_and_torch_default_elsewhere():
    auto = partial(torch.optim.AdamW, lr=0.1, fused=None)
    assert resolve_fused(auto, torch.device("cuda", 0)).keywords == {"lr": 0.1, "fused": True}
    assert resolve_fused(auto, torch.device("cpu")).keywords == {"lr": 0.1, "fused": True}
    assert resolve_fused(auto, torch.device("meta")).keywords == {"lr": 0.1}  # no fused kernel
    explicit = partial(torch.optim.AdamW, lr=0.1, fused=False)
    assert resolve_fused(explicit, torch.device("cuda")) is explicit
    assert resolve_fused(torch.optim.SGD, torch.device("cuda")) is torch.optim.SGD


def test_the_configured_adamw_on_cpu_is_fused_and_steps_as_torchs_default_adamw():
    """Fused AdamW (one kernel) against torch's default (a loop of tensor ops): the same update, so
    the same weights after 20 steps to fp32 rounding, in two groups (weight decay and none)."""
    cfg = compose([]).optimizer
    assert cfg.fused is None
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(64, 32, generator=gen), torch.randn(32, generator=gen)]
    grads = [[torch.randn(p.shape, generator=gen) for p in init] for _ in range(20)]
    weights = {}
    for fused in (True, False):
        params = [torch.nn.Parameter(p.clone()) for p in init]
        groups = [{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}]
        factory = resolve_fused(instantiate(cfg), torch.device("cpu"))
        if not fused:
            factory = partial(factory.func, **{k: v for k, v in factory.keywords.items() if k != "fused"})
        optimizer = factory(groups)
        assert optimizer.defaults.get("fused") == (fused or None)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            optimizer.step()
        weights[fused] = [p.detach() for p in params]
    for a, b, p0 in zip(weights[True], weights[False], init, strict=True):
        assert not torch.equal(a, p0)
        assert (a - b).abs().max() <= 1e-6


def test_finite_check_interval_is_every_step_on_cpu_and_the_log_interval_elsewhere():
    assert finite_check_interval(torch.device("cpu"), 10) == 1
    assert finite_check_interval(torch.device("cuda", 0), 10) == 10
    assert finite_check_interval(torch.device("cuda", 0), 0) == 1


def nan_from_call(monkeypatch, n: int) -> None:
    """GOR's loss becomes NaN from its ``n``-th call on (0-based): the step-``n`` loss of a run."""
    from jina5.losses.gor import GlobalOrthogonal

    calls = []
    forward = GlobalOrthogonal.forward

    def patched(self, batch):
        calls.append(1)
        out = forward(self, batch)
        return out * float("nan") if len(calls) > n else out

    monkeypatch.setattr(GlobalOrthogonal, "forward", patched)


@pytest.mark.parametrize("grad_cache", [None, 3])
def test_a_deferred_check_names_the_first_non_finite_step(tmp_path, monkeypatch, grad_cache):
    """Flags read every 3 steps (as on a GPU with log_every_n_steps=3): NaN from step 1 raises after
    step 2 (the first read), naming step 1; the weights took at most 3 - 1 updates from it."""
    monkeypatch.setattr(jina5.training.module, "finite_check_interval", lambda device, every: 3)
    nan_from_call(monkeypatch, 1)
    rec = LossRecorder()
    cfg = run_cfg(
        tmp_path,
        "experiment=ablation/combined",
        "trainer.max_steps=8",
        f"module.grad_cache.chunk_size={'null' if grad_cache is None else grad_cache}",
    )
    with pytest.raises(FloatingPointError, match=r"step 1 \(batch 1\) on dataset .*\(read at step 2\)"):
        train(cfg, callbacks=[rec])
    assert sorted(rec.losses) == [1, 2]  # steps 0 and 1 completed; step 2 raised before its update


def test_a_checkpoint_is_never_saved_before_the_flags_are_read(tmp_path, monkeypatch):
    """With reads rarer than checkpoints, the checkpoint at step 2 (val_check_interval) reads them."""
    monkeypatch.setattr(jina5.training.module, "finite_check_interval", lambda device, every: 1000)
    nan_from_call(monkeypatch, 0)
    cfg = run_cfg(
        tmp_path, "experiment=ablation/combined", "trainer.max_steps=6", "trainer.val_check_interval=2"
    )
    with pytest.raises(FloatingPointError, match=r"step 0 .*\(read at step 2\)"):
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))


class StepGradNorms(L.Callback):
    """The global gradient norm each optimizer step used (read by a step post-hook, after Lightning's
    closure has run the backward pass and the clipping), and the training losses."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.losses: list[float] = []

    def on_train_start(self, trainer, module) -> None:
        optimizer = trainer.optimizers[0]
        self.fused = optimizer.defaults.get("fused")

        def record(opt, args, kwargs) -> None:
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

        optimizer.register_step_post_hook(record)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.mark.parametrize("grad_cache", ["null", "4"])
def test_fused_adamw_under_bf16_mixed_clips_as_the_unfused_one_does(tmp_path, grad_cache):
    """The GPU config (bf16-mixed, fused AdamW, clipping) on a CPU: Lightning's bf16-mixed plugin refused
    to clip for a fused optimizer (it has no scaler: the gradients are not scaled); here every step's
    gradient norm is clipped to gradient_clip_val, and the run equals the unfused one."""
    runs = {}
    for fused in ("true", "false"):
        rec = StepGradNorms()
        cfg = run_cfg(
            tmp_path / fused,
            "precision=bf16",
            f"optimizer.fused={fused}",
            "trainer.gradient_clip_val=0.01",
            "trainer.max_steps=3",
            "trainer.val_check_interval=3",
            "export=false",
            f"module.grad_cache.chunk_size={grad_cache}",
        )
        train(cfg, callbacks=[rec])
        runs[fused] = rec
    assert runs["true"].fused is True and not runs["false"].fused
    for rec in runs.values():
        assert len(rec.norms) == 3
        assert rec.norms == pytest.approx([0.01] * 3, rel=1e-3)  # clipped (unclipped norms are > 1)
    assert runs["true"].losses == pytest.approx(runs["false"].losses, rel=1e-3)
