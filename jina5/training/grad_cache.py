"""GradCache: the exact gradient of a batch-coupled loss with the activation memory of ``chunk_size`` texts.

Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup". The loss
couples every text of the batch (in-batch negatives), but it sees the encoder only through the
embeddings e = f_theta(x), so dL/dtheta = sum_i (dL/de_i)^T (de_i/dtheta):

    1. e_c = f(x_c) for each chunk c of <= chunk_size texts, without grad; the RNG state (torch CPU,
       and the chunk's CUDA device) is recorded before each forward
    2. L(e) on the detached e (leaves with requires_grad): g = dL/de (N, D), and dL/dphi for the loss's
       own parameters phi (distillation projection psi, a learnable temperature)
    3. for each chunk: restore its RNG state (the same dropout masks as in pass 1), e_c = f(x_c) with
       grad, backward the surrogate sum(e_c * g_c), whose gradient is (de_c/dtheta)^T g_c; the last
       chunk's surrogate also carries sum(phi * dL/dphi), so phi.grad = dL/dphi

theta.grad then sums to dL/dtheta exactly (up to float summation order). Under DDP the backward of
every chunk but the last runs without gradient sync (``no_sync``), so gradients are all-reduced once
per step, in the last backward, which reaches every trainable parameter (phi included).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Tokens = dict[str, Tensor]


@dataclass(frozen=True)
class RngState:
    """The torch CPU generator's state and, for a CUDA forward, that device's generator's state."""

    cpu: Tensor
    cuda_device: int | None
    cuda: Tensor | None

    @classmethod
    def capture(cls, device: torch.device) -> RngState:
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            return cls(torch.get_rng_state(), index, torch.cuda.get_rng_state(index))
        return cls(torch.get_rng_state(), None, None)

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the body from this state; the generators are back where they were afterwards."""
        devices = [] if self.cuda_device is None else [self.cuda_device]
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.cuda_device)
            yield


def chunks(tokens: Tokens, size: int) -> list[Tokens]:
    """Rows [0, size), [size, 2 size), ... of every (N, ...) tensor of a tokenised batch (padding kept)."""
    n = next(iter(tokens.values())).shape[0]
    return [{k: v[i : i + size] for k, v in tokens.items()} for i in range(0, n, size)]


def embed_without_grad(encoder: nn.Module, pieces: Sequence[Tokens]) -> tuple[Tensor, list[RngState]]:
    """Pass 1: (N, D) embeddings of the concatenated chunks, no graph kept, and each chunk's RNG state."""
    states, out = [], []
    with torch.no_grad():
        for piece in pieces:
            states.append(RngState.capture(piece["input_ids"].device))
            out.append(encoder(**piece))
    return torch.cat(out), states


def grad_cache_backward(
    encoder: nn.Module,
    inputs: Sequence[Tokens],
    loss: Callable[[list[Tensor]], tuple[Tensor, dict[str, Tensor]]],
    loss_params: Sequence[nn.Parameter],
    chunk_size: int,
    backward: Callable[[Tensor], None] = Tensor.backward,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Accumulate dL/dtheta into ``encoder``'s and dL/dphi into ``loss_params``' ``.grad``; return L's
    (total, parts), detached.

    Args:
        inputs: tokenised texts per field (e.g. query, document, negatives), each {input_ids (N_f, L_f),
            attention_mask (N_f, L_f)}.
        loss: [e_f (N_f, D) per field] -> (total, parts); may gather over ranks (its backward then runs
            the collective on every rank, which all call this together).
        loss_params: the parameters of ``loss`` (phi) that take gradients.
        backward: runs the backward of a scalar (``LightningModule.manual_backward`` under Lightning:
            precision scaling and DDP's ``prepare_for_backward``).
        no_sync: a context without DDP gradient sync (``no_backward_sync``); used for all but the last
            backward.
    """
    pieces = [chunks(tokens, chunk_size) for tokens in inputs]
    cached = [embed_without_grad(encoder, p) for p in pieces]
    leaves = [e.detach().requires_grad_() for e, _ in cached]
    total, parts = loss(leaves)
    phi = [p for p in loss_params if p.requires_grad]
    grads = torch.autograd.grad(total, [*leaves, *phi], allow_unused=True)
    emb_grads = [torch.zeros_like(e) if g is None else g for e, g in zip(leaves, grads, strict=False)]
    phi_terms = [(p, g) for p, g in zip(phi, grads[len(leaves) :], strict=True) if g is not None]

    work = [
        (piece, state, g)
        for field, (_, states), field_grad in zip(pieces, cached, emb_grads, strict=True)
        for piece, state, g in zip(field, states, field_grad.split(chunk_size), strict=True)
    ]
    for i, (piece, state, g) in enumerate(work):
        last = i == len(work) - 1
        with contextlib.nullcontext() if last else no_sync():
            with state.replay():
                e = encoder(**piece)
            surrogate = (e * g).sum()
            if last:
                surrogate = surrogate + sum((p * gp).sum() for p, gp in phi_terms)
            backward(surrogate)
    return total.detach(), {k: v.detach() for k, v in parts.items()}


def no_backward_sync(strategy: object) -> contextlib.AbstractContextManager:
    """Lightning's context without DDP gradient sync (``ParallelStrategy.block_backward_sync``); a
    no-op for a single-device strategy."""
    block = getattr(strategy, "block_backward_sync", None)
    return block() if block is not None else contextlib.nullcontext()
