"""Distributed trainer configs on CPU: ``trainer=fsdp`` (its block-class wrap policy through torch's own
wrapping machinery, its checks, the FSDP export path) and ``trainer=ddp_multinode`` (a Trainer with
num_nodes x devices ranks). Lightning refuses FSDP without a GPU, so no Trainer runs FSDP here; torch's
FSDP itself is built on 2 gloo CPU ranks (:func:`fsdp_ranks`): its sharded views, weight decay groups,
clipping and mixed-precision policy."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from helpers import compose, gloo_group, run_cfg
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import FSDPPrecision
from lightning.pytorch.strategies import FSDPStrategy
from omegaconf import OmegaConf, open_dict
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointWrapper,
    apply_activation_checkpointing,
    checkpoint_wrapper,
)

from jina5.model.encoder import Encoder
from jina5.model.tiny import tiny_model_and_tokenizer
from jina5.runs.lifecycle import exportable_encoder
from jina5.train import train
from jina5.training.module import EmbeddingModule
from jina5.training.objective import build_objective
from jina5.training.strategies import ClassNamePolicy, check_fsdp, fsdp_strategy, original_name


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


def test_fsdp_precision_is_bf16_compute_with_fp32_reduce_and_buffers_and_inputs_not_cast():
    """The policy Lightning hands FSDP under trainer=fsdp (bf16-mixed): its own bf16-mixed would cast the
    buffers (rotary inv_freq) and the batch (teacher vectors, scores) to bf16 and reduce in bf16."""
    node = trainer_cfg("trainer=fsdp", "student=qwen3_0_6b")
    strategy = instantiate(node.strategy)
    strategy.precision_plugin = FSDPPrecision(node.precision)
    policy = strategy.mixed_precision_config
    assert (policy.param_dtype, policy.reduce_dtype, policy.buffer_dtype) == (
        torch.bfloat16,
        torch.float32,
        torch.float32,
    )
    assert policy.cast_root_forward_inputs is False and policy.cast_forward_inputs is False
    assert policy.keep_low_precision_grads is False  # fp32 gradients into the fp32 master weights


def test_untried_fsdp_combinations_are_refused_naming_the_keys():
    model, _ = tiny_model_and_tokenizer("bert", layers=1)
    strategy = fsdp_strategy(["BertLayer"])
    with pytest.raises(
        ValueError, match=r"trainer.precision='bf16-true' .*untried.*trainer.precision=bf16-mixed"
    ):
        check_fsdp(strategy, model, precision="bf16-true")
    with pytest.raises(ValueError, match=r"trainer.precision='32-true' .*trainer.precision=bf16-mixed"):
        check_fsdp(strategy, model, precision="32-true")
    with pytest.raises(
        ValueError, match=r"module.grad_cache.chunk_size=4 .*chunk_size=null, or .*trainer=gpu"
    ):
        check_fsdp(strategy, model, precision="bf16-mixed", grad_cache=4)
    check_fsdp(strategy, model, precision="bf16-mixed", grad_cache=None)
    check_fsdp("ddp", model, precision="bf16-true", grad_cache=4)  # DDP: both are fine


def toy_module() -> EmbeddingModule:
    """Tiny BERT (2 blocks) and the combined objective (with psi), AdamW with weight decay; seeded."""
    torch.manual_seed(0)
    model, tokenizer = tiny_model_and_tokenizer("bert", layers=2)
    encoder = Encoder(model, tokenizer=tokenizer, prompts={"query": "Query: ", "document": "Document: "})
    objective = build_objective(
        OmegaConf.to_container(compose(["experiment=ablation/combined"]).objective),
        student_dim=encoder.dim,
        teacher_dim=48,
    )
    return EmbeddingModule(
        encoder,
        objective,
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.01),
        scheduler={"kind": "constant", "warmup_steps": 0, "total_steps": 10},
        gather_across_devices=False,
        weight_decay_exclude_1d=True,
        base_reference_dropout=False,
        projection_warm_start=0,
    )


def global_grad_norm(params) -> float:
    """The norm of the full gradient from each rank's shards (every element lives on one rank)."""
    sq = sum(
        (p.grad.double().pow(2).sum() for p in params if p.grad is not None),
        torch.zeros((), dtype=torch.float64),
    )
    torch.distributed.all_reduce(sq)
    return math.sqrt(float(sq))


def attempt(results: dict, key: str, fn) -> None:
    """results[key] = fn() or the error it raised, as a string (so one failing check fails one test)."""
    try:
        results[key] = fn()
    except Exception as e:  # noqa: BLE001
        results[key] = f"error: {type(e).__name__}: {e}"


def _fsdp_rank(rank: int, world: int, init_file: str, out: str) -> None:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    with gloo_group(rank, world, init_file):
        torch.set_num_threads(1)
        results: dict = {}
        cpu = torch.device("cpu")

        # weight decay groups and clipping: the module wrapped as Lightning wraps it (fp32, no policy)
        module = toy_module()
        results["matrices_before"] = sorted(n for n, p in module.named_parameters() if p.ndim >= 2)
        results["vectors_before"] = sorted(n for n, p in module.named_parameters() if p.ndim < 2)
        strategy = fsdp_strategy(["BertLayer"])
        root = FSDP(
            module, auto_wrap_policy=strategy.kwargs["auto_wrap_policy"], use_orig_params=True, device_id=cpu
        )
        results["ndims_after"] = sorted({p.ndim for p in module.parameters()})

        def groups():
            optimizer = module.configure_optimizers()["optimizer"]
            names = {id(p): original_name(n) for n, p in module.named_parameters()}
            return [
                (sorted(names[id(p)] for p in g["params"]), g["weight_decay"]) for g in optimizer.param_groups
            ]

        attempt(results, "groups", groups)

        texts = [f"a text {i} about {w}" for i, w in enumerate(["cats", "rain", "tea", "stocks"])][
            2 * rank : 2 * rank + 2
        ]
        tokens = module.encoder.tokenize(texts, prompt="document")
        module.forward = lambda t: module.encoder(**t)  # the root's forward: what Lightning redirects to
        weights = torch.randn(2, module.encoder.dim, generator=torch.Generator().manual_seed(rank))
        (root(tokens) * weights).sum().mul(1e3).backward()
        optimizer = torch.optim.AdamW(module.parameters())
        module._trainer = SimpleNamespace(
            strategy=strategy,
            precision_plugin=FSDPPrecision("bf16-mixed"),
            gradient_clip_val=1e-3,
            gradient_clip_algorithm=None,
        )
        strategy.model = root
        results["norm_before"] = global_grad_norm(module.parameters())

        def clip():
            module.configure_gradient_clipping(optimizer, 1e-3, None)
            return global_grad_norm(module.parameters())

        attempt(results, "norm_after", clip)

        # the mixed-precision policy on a RoPE student: inv_freq stays fp32, the batch is not cast
        model, tok = tiny_model_and_tokenizer("qwen3", layers=2)
        inv_freq = model.rotary_emb.inv_freq.clone()
        strategy = fsdp_strategy(["Qwen3DecoderLayer"])
        strategy.precision_plugin = FSDPPrecision("bf16-mixed")
        policy = strategy.mixed_precision_config
        wrapped = FSDP(
            model,
            auto_wrap_policy=strategy.kwargs["auto_wrap_policy"],
            use_orig_params=True,
            device_id=cpu,
            mixed_precision=policy,
        )
        hidden = wrapped(**tok(texts, padding=True, return_tensors="pt")).last_hidden_state
        results["hidden_dtype"] = str(hidden.dtype)
        after = model.rotary_emb.inv_freq
        results["inv_freq"] = (str(after.dtype), float((after.double() - inv_freq.double()).abs().max()))

        class Probe(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lin = torch.nn.Linear(2, 2)

            def forward(self, x, teacher):
                return self.lin(x.to(self.lin.weight.dtype)), teacher

        probe = FSDP(Probe(), use_orig_params=True, device_id=cpu, mixed_precision=policy)
        teacher = torch.randn(2, 3, dtype=torch.float32) / 3
        results["teacher"] = str(probe(torch.ones(1, 2), teacher)[1].dtype)
        if rank == 0:
            torch.save(results, out)


@pytest.fixture(scope="module")
def fsdp_ranks(tmp_path_factory):
    """What 2 gloo ranks saw of torch's FSDP (rank 0's record): built once for the tests below."""
    tmp = tmp_path_factory.mktemp("fsdp")
    out = tmp / "rank0.pt"
    torch.multiprocessing.spawn(_fsdp_rank, args=(2, str(tmp / "init"), str(out)), nprocs=2)
    return torch.load(out, weights_only=False)


def test_under_fsdp_weight_decay_groups_are_chosen_by_name_before_wrapping(fsdp_ranks):
    """FSDP flattens every parameter to a 1-D view (use_orig_params): a shape rule would put all of them
    in the no-decay group. Chosen by name at construction, the groups are those of the unwrapped module."""
    r = fsdp_ranks
    assert r["ndims_after"] == [1]
    assert len(r["matrices_before"]) == 16 and "objective.losses.distill.proj.weight" in r["matrices_before"]
    assert "objective.losses.distill.proj.bias" in r["vectors_before"]  # 15 BERT matrices and psi's
    assert r["groups"] == [(r["matrices_before"], 0.01), (r["vectors_before"], 0.0)]


def test_under_fsdp_clipping_by_norm_clips_the_global_norm_over_the_shards(fsdp_ranks):
    """Lightning's FSDPPrecision refuses norm clipping; the root FSDP module clips the norm of the full
    gradient (over both ranks' shards) to gradient_clip_val."""
    assert fsdp_ranks["norm_before"] > 1.0
    assert fsdp_ranks["norm_after"] == pytest.approx(1e-3, rel=1e-4)


def test_under_fsdp_rope_frequencies_stay_fp32_and_the_batch_is_not_cast(fsdp_ranks):
    """bf16 compute (the blocks' outputs), but the rotary inv_freq buffer is kept fp32 bit for bit (in
    bf16 the angles at 512 tokens are off by up to 0.59 rad) and the teacher vectors reach the module in fp32."""
    assert fsdp_ranks["hidden_dtype"] == "torch.bfloat16"
    assert fsdp_ranks["inv_freq"] == ("torch.float32", 0.0)
    assert fsdp_ranks["teacher"] == "torch.float32"
