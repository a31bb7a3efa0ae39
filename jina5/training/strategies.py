"""Lightning strategies built from configs: FSDP for the paper-scale students (``conf/trainer/fsdp.yaml``).

FSDP shards every *transformer block* of the student across ranks. Which modules are blocks is a config
list of class names (``Qwen3DecoderLayer``, ``EuroBertDecoderLayer``, ``BertLayer``, ...), matched against
``type(module).__name__`` when FSDP wraps the model, so a config names blocks of any architecture without
importing its modeling file. :func:`check_wrap_policy` checks at build time, before fitting, that the
student has at least one of them (a typo would otherwise shard the whole model as one unit).
After fit, ``jina5.runs.lifecycle.exportable_encoder`` gives the export the full student (not a rank's shard).

Checkpoints: only ``state_dict_type: full`` is supported. Lightning then gathers the full state dict on
rank 0 and writes ``last.ckpt`` as one file through the trainer's checkpoint IO (``AtomicCheckpointIO``),
with the same keys as an unsharded run, so resuming (``ckpt_path=last``), ``jina5.runs.checkpoints.
read_checkpoint``, checkpoint averaging and a stage-2 ``init_from`` read it as they read a DDP run's.
``sharded`` writes ``last.ckpt`` as a directory of per-rank shards that none of them reads: refused.

Precision: FSDP gets its own mixed-precision policy (:func:`bf16_mixed_policy`): bf16 compute, fp32
master weights, gradient reduction and buffers, and the batch not cast. Lightning's ``bf16-mixed`` for
FSDP would cast the buffers to bf16 (the rotary ``inv_freq``: angles off by up to 0.59 rad at 512
tokens, while the export runs fp32) and the batch's floats (teacher vectors, CoSENT scores) too.
Only ``bf16-mixed`` is supported (:func:`check_fsdp`). Gradient clipping by norm is done by the
root FSDP module (``EmbeddingModule.configure_gradient_clipping``), weight decay is chosen by
parameter name before wrapping (``EmbeddingModule.no_decay_names``, :func:`original_name`).

Untried, so refused by :func:`check_fsdp`: ``bf16-true`` (bf16 master weights round small AdamW updates
away) and GradCache (``module.grad_cache.chunk_size``: psi may get no gradient under
``use_orig_params``, and the root unit reshards between chunks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch.distributed.fsdp import MixedPrecision

SHARDING_STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "_HYBRID_SHARD_ZERO2")
PRECISION = "bf16-mixed"  # the one trainer precision FSDP runs here
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def bf16_mixed_policy() -> MixedPrecision:
    """FSDP's mixed precision for ``bf16-mixed``: parameters gathered in bf16 for compute, gradients
    reduced in fp32 (into fp32 master weights), buffers kept fp32 (the rotary ``inv_freq``), and the
    root's forward inputs (the batch: teacher vectors, scores) not cast."""
    return MixedPrecision(
        param_dtype=torch.bfloat16,
        reduce_dtype=torch.float32,
        buffer_dtype=torch.float32,
        cast_forward_inputs=False,
        cast_root_forward_inputs=False,
    )


def original_name(name: str) -> str:
    """A parameter's name as before FSDP / activation-checkpoint wrapping (their wrapper prefixes
    dropped): under ``use_orig_params`` the wrapped module's parameters keep their names this way."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


@dataclass(frozen=True)
class ClassNamePolicy:
    """An FSDP auto-wrap policy (``(module, recurse, nonwrapped_numel) -> bool``, as
    ``torch.distributed.fsdp.wrap``'s): wrap every module whose class is named in ``names``."""

    names: frozenset[str]

    def __call__(self, module: torch.nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
        return True if recurse else type(module).__name__ in self.names


def fsdp_strategy(
    block_classes: Sequence[str],
    sharding_strategy: str = "FULL_SHARD",
    activation_checkpointing: bool = False,
    state_dict_type: str = "full",
    cpu_offload: bool = False,
    mixed_precision: MixedPrecision | None = None,
    **kwargs,
) -> FSDPStrategy:
    """Lightning's ``FSDPStrategy`` wrapping (and, with ``activation_checkpointing``, recomputing in the
    backward pass) every module of a class named in ``block_classes``, with ``mixed_precision`` (None:
    :func:`bf16_mixed_policy`); ``kwargs`` go to FSDPStrategy."""
    names = frozenset(block_classes or ())
    if not names:
        raise ValueError("trainer.strategy.block_classes: name the student's transformer block classes")
    if sharding_strategy not in SHARDING_STRATEGIES:
        raise ValueError(
            f"trainer.strategy.sharding_strategy must be one of {' | '.join(SHARDING_STRATEGIES)}, "
            f"got {sharding_strategy!r}"
        )
    if state_dict_type != "full":
        raise ValueError(
            f"trainer.strategy.state_dict_type={state_dict_type!r}: only 'full' is supported (resume, "
            "averaging, stage-2 init_from and export read last.ckpt as one file; jina5/training/strategies.py)"
        )
    policy = ClassNamePolicy(names)
    return FSDPStrategy(
        auto_wrap_policy=policy,
        activation_checkpointing_policy=policy if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        state_dict_type=state_dict_type,
        cpu_offload=cpu_offload,
        mixed_precision=mixed_precision or bf16_mixed_policy(),
        **kwargs,
    )


def check_fsdp(
    strategy: object,
    model: torch.nn.Module,
    average_with: object = None,
    *,
    precision: str | None = None,
    grad_cache: int | None = None,
) -> None:
    """Before fitting under FSDP: raise if the :class:`ClassNamePolicy` matches no module of ``model``, if
    the run averages checkpoints (``adapter.average_with``: it loads weights into the unsharded
    module after fit, which FSDP has wrapped in place), if the trainer's ``precision`` is not
    ``bf16-mixed`` (``bf16-true`` is untried; the FSDP policy computes in bf16), or if GradCache is on
    (``grad_cache``: its chunk size; untried under FSDP)."""
    if not isinstance(strategy, FSDPStrategy):
        return
    if grad_cache is not None:
        raise ValueError(
            f"module.grad_cache.chunk_size={grad_cache} is not supported under trainer=fsdp (untried: the "
            "distillation projection may get no gradient under use_orig_params, and the root unit "
            "reshards between chunks); set module.grad_cache.chunk_size=null, or train with trainer=gpu (DDP)"
        )
    if precision is not None and precision != PRECISION:
        why = (
            "untried: bf16 master weights round small AdamW updates away"
            if precision == "bf16-true"
            else "its FSDP policy computes in bf16 (jina5/training/strategies.py)"
        )
        raise ValueError(
            f"trainer.precision={precision!r} is not supported under trainer=fsdp ({why}); set "
            f"trainer.precision={PRECISION} (bf16 compute, fp32 master weights, reduction and buffers)"
        )
    if average_with is not None:
        raise ValueError(
            f"adapter.average_with={average_with} is not supported under trainer=fsdp; set it to null or "
            "train with trainer=gpu (DDP)"
        )
    policy = strategy.kwargs.get("auto_wrap_policy")
    if not isinstance(policy, ClassNamePolicy):
        return
    present = {type(m).__name__ for m in model.modules()}
    if not policy.names & present:
        blocks = sorted(n for n in present if n.endswith(("Layer", "Block")))
        raise ValueError(
            f"trainer.strategy.block_classes={sorted(policy.names)} names no module of the student; "
            f"its block-like classes: {blocks}"
        )
