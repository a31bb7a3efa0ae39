"""Distributed trainer configs on CPU: ``trainer=fsdp`` (its block-class wrap policy through torch's own
wrapping machinery, its checks, the FSDP export path) and ``trainer=ddp_multinode`` (a Trainer with
num_nodes x devices ranks). Lightning refuses FSDP without a GPU, so no FSDP run happens here."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from helpers import compose, run_cfg
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.strategies import FSDPStrategy
from omegaconf import open_dict
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointWrapper,
    apply_activation_checkpointing,
    checkpoint_wrapper,
)

from jina5.model.encoder import Encoder
from jina5.model.tiny import tiny_model_and_tokenizer
from jina5.runs.lifecycle import exportable_encoder
from jina5.train import train
from jina5.training.strategies import ClassNamePolicy, check_fsdp, fsdp_strategy


def trainer_cfg(*overrides: str):
    """A composed trainer node, instantiable outside a Hydra app (its run dir interpolation set)."""
    cfg = compose(list(overrides))
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = "unused"
    return cfg.trainer


def test_fsdp_config_builds_lightnings_strategy_with_the_block_policy():
    node = trainer_cfg("trainer=fsdp", "student=qwen3_0_6b")
    assert (node.accelerator, node.devices, node.precision) == ("gpu", 8, "bf16-mixed")
    strategy = instantiate(node.strategy)
    assert isinstance(strategy, FSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert policy == ClassNamePolicy(
        frozenset({"Qwen3DecoderLayer", "EuroBertDecoderLayer", "BertLayer", "MPNetLayer"})
    )
    assert strategy.kwargs["use_orig_params"] and strategy._state_dict_type == "full"
    assert strategy._activation_checkpointing_kwargs == {}
    checkpointed = instantiate(node.strategy, activation_checkpointing=True)
    assert checkpointed._activation_checkpointing_kwargs == {"auto_wrap_policy": policy}


@pytest.mark.parametrize(("model_type", "block"), [("qwen3", "Qwen3DecoderLayer"), ("bert", "BertLayer")])
def test_the_policy_wraps_exactly_the_blocks_through_torchs_wrapping(model_type, block):
    """Torch's auto-wrap (what FSDP and Lightning's activation checkpointing call) with the policy of
    trainer=fsdp wraps each transformer block once, nothing else, and leaves outputs and gradients as
    they were."""
    model, tok = tiny_model_and_tokenizer(model_type, layers=3)
    batch = tok(["a first text", "and a second, longer one"], padding=True, return_tensors="pt")
    plain = model(**batch, use_cache=False).last_hidden_state
    plain.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}  # no pooler
    model.zero_grad()
    policy = instantiate(trainer_cfg("trainer=fsdp").strategy).kwargs["auto_wrap_policy"]
    apply_activation_checkpointing(model, checkpoint_wrapper_fn=checkpoint_wrapper, auto_wrap_policy=policy)
    wrapped = [m for m in model.modules() if isinstance(m, CheckpointWrapper)]
    assert len(wrapped) == 3 and {type(m._checkpoint_wrapped_module).__name__ for m in wrapped} == {block}
    # eval mode (no dropout): torch's checkpoint recomputes the blocks in the backward pass all the same
    out = model(**batch, use_cache=False).last_hidden_state
    torch.testing.assert_close(out, plain)
    out.sum().backward()
    after = {
        n.replace("._checkpoint_wrapped_module", ""): p.grad
        for n, p in model.named_parameters()
        if p.grad is not None
    }
    assert after.keys() == grads.keys()
    for name, grad in after.items():
        torch.testing.assert_close(grad, grads[name])


def test_fsdp_settings_that_cannot_work_are_named():
    with pytest.raises(ValueError, match="state_dict_type='sharded': only 'full'"):
        fsdp_strategy(["BertLayer"], state_dict_type="sharded")
    with pytest.raises(ValueError, match="sharding_strategy must be one of FULL_SHARD"):
        fsdp_strategy(["BertLayer"], sharding_strategy="FULL")
    with pytest.raises(ValueError, match="block_classes: name"):
        fsdp_strategy([])
    model, _ = tiny_model_and_tokenizer("bert", layers=1)
    with pytest.raises(ValueError, match=r"block_classes=\['BertLayr'\] names no module.*'BertLayer'"):
        check_fsdp(fsdp_strategy(["BertLayr"]), model)
    with pytest.raises(ValueError, match="adapter.average_with=best is not supported under trainer=fsdp"):
        check_fsdp(fsdp_strategy(["BertLayer"]), model, "best")
    check_fsdp(fsdp_strategy(["BertLayer"]), model)
    check_fsdp("ddp", model, "best")  # not FSDP: nothing to check


def test_lightning_refuses_fsdp_on_cpu():
    """Why no FSDP run is in this suite (Lightning 2.x; torch's FSDP needs an accelerator too)."""
    node = trainer_cfg("trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=1")
    with pytest.raises(Exception, match="requires a GPU accelerator"):
        instantiate(node)


class Grab(L.Callback):
    """The trained module, at the end of fit."""

    def on_train_end(self, trainer, module) -> None:
        self.module = module


def test_under_fsdp_the_export_takes_the_full_weights_of_last_ckpt(tmp_path):
    """After an FSDP fit the module's blocks hold one rank's shard: the export rebuilds the student and
    loads last.ckpt (rank 0's full state dict). Here a real 2-step run's module is scrambled afterwards,
    standing for the sharded module: the FSDP export equals last.ckpt's weights, the plain one the module's."""
    cfg = run_cfg(tmp_path, "trainer.max_steps=2", "trainer.val_check_interval=2", "export=false")
    grab = Grab()
    train(cfg, callbacks=[grab])
    module, run_dir = grab.module, Path(cfg.paths.output_dir)
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    with torch.no_grad():
        for p in module.encoder.parameters():
            p.add_(1.0)
    fsdp = SimpleNamespace(strategy=fsdp_strategy(["BertLayer"]))
    exported = exportable_encoder(module, fsdp, cfg, run_dir)
    assert isinstance(exported, Encoder) and exported is not module.encoder
    for name, value in exported.state_dict().items():
        torch.testing.assert_close(value, saved[f"encoder.{name}"], rtol=0, atol=0)
    assert exportable_encoder(module, SimpleNamespace(strategy="ddp"), cfg, run_dir) is module.encoder


def test_multinode_ddp_config_gives_a_trainer_of_num_nodes_x_devices_ranks():
    node = trainer_cfg("trainer=ddp_multinode")
    assert (node.num_nodes, node.devices, node.strategy, node.accelerator) == (2, 8, "ddp", "gpu")
    trainer = instantiate(node, accelerator="cpu", devices=2)  # CPU stand-in: 2 processes per node
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size) == (2, 2, 4)
    assert type(trainer.strategy).__name__ == "DDPStrategy"
