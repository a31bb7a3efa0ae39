"""GradCache (jina5.training.grad_cache, ``module.grad_cache.chunk_size``): with dropout on, the gradient of every
parameter (encoder, distillation projection psi, learnable temperature) equals the full-batch gradient
of the same forward (same dropout masks), on 1 process and on 2 gloo ranks (DDP, one sync per step)."""

from __future__ import annotations

import contextlib

import helpers
import pytest
import torch
from helpers import LossRecorder, compose, gloo_group, run_cfg
from lightning.pytorch.overrides.distributed import prepare_for_backward
from omegaconf import OmegaConf

from jina5.runs.curves import read_curves
from jina5.train import train
from jina5.training.distributed import gather_with_grad
from jina5.training.grad_cache import chunks
from jina5.training.module import EmbeddingModule, check_grad_cache
from jina5.training.objective import build_objective

B, K, TEACHER_DIM = 8, 2, 48
WORDS = ["cats", "stocks", "rain", "tea"] * 2
QUERIES = [f"query {i} about {w}" for i, w in enumerate(WORDS)]
DOCUMENTS = [f"a document on {w}, number {i}" for i, w in enumerate(WORDS)]
NEGATIVES = [f"an unrelated text {i} of {'some ' * (i % 3)}length" for i in range(B * K)]


def objective_cfg(experiment: str = "ablation/combined", learnable_temperature: bool = True) -> dict:
    cfg = OmegaConf.to_container(compose([f"experiment={experiment}"]).objective)
    cfg["losses"]["infonce"]["learnable_temperature"] = learnable_temperature
    return cfg


def toy_module(cfg: dict, chunk_size: int | None) -> EmbeddingModule:
    """Tiny BERT (dropout 0.1, in train mode) on ``cfg``; seeded: the same in every process."""
    module = helpers.toy_module(
        lambda encoder: build_objective(cfg, student_dim=encoder.dim, teacher_dim=TEACHER_DIM),
        projection_warm_start=0,
        grad_cache={"chunk_size": chunk_size},
    )
    config = module.encoder.backbone.config
    assert config.hidden_dropout_prob > 0 and config.attention_probs_dropout_prob > 0
    return module.train()


def toy_batch(module: EmbeddingModule, rows: range, texts_only: bool = False) -> dict:
    """Rows ``rows`` of one 8-row batch with K hard negatives per query and random teacher vectors."""
    teacher = torch.randn(2, B, TEACHER_DIM, generator=torch.Generator().manual_seed(0))
    enc = module.encoder
    negatives = [NEGATIVES[K * r + j] for r in rows for j in range(K)]
    batch = {
        "query": None if texts_only else enc.tokenize([QUERIES[r] for r in rows], prompt="query"),
        "document": enc.tokenize([DOCUMENTS[r] for r in rows], prompt="document"),
        "teacher_query": None if texts_only else teacher[0, list(rows)],
        "teacher_document": teacher[1, list(rows)],
        "dataset": "toy",
    }
    if not texts_only:
        batch |= {"negatives": enc.tokenize(negatives, prompt="document"), "negatives_per_query": K}
    return batch


def grads(module: EmbeddingModule) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def chunked_forward(module: EmbeddingModule, batch: dict, chunk: int) -> tuple:
    """(q, d, n) with grad, each field embedded chunk by chunk in GradCache's pass-1 order (query,
    document, negatives): the dropout masks GradCache's loss sees, in one autograd graph."""

    def embed(tokens: dict | None) -> torch.Tensor | None:
        if tokens is None:
            return None
        return torch.cat([module.encoder(**piece) for piece in chunks(tokens, chunk)])

    q, d, n = embed(batch["query"]), embed(batch["document"]), embed(batch.get("negatives"))
    return q, d, None if n is None else n.view(d.shape[0], K, -1)


def full_batch(module: EmbeddingModule, batch: dict, chunk: int, seed: int) -> tuple[float, dict]:
    """The reference: loss and gradients of one backward through the whole batch's graph."""
    module.zero_grad()
    torch.manual_seed(seed)
    total, _ = module.objective(module.embedding_batch(batch, chunked_forward(module, batch, chunk)))
    total.backward()
    return float(total), grads(module)


def grad_cached(module: EmbeddingModule, batch: dict, seed: int) -> tuple[float, dict]:
    module.zero_grad()
    torch.manual_seed(seed)
    total, _ = module.grad_cache_backward(
        batch, backward=torch.Tensor.backward, no_sync=contextlib.nullcontext
    )
    return float(total), grads(module)


def assert_same_gradients(got: dict, ref: dict) -> None:
    assert got.keys() == ref.keys()
    assert {
        "objective.losses.distill.proj.weight",
        "encoder.backbone.embeddings.word_embeddings.weight",
    } <= set(ref)
    for name, g in ref.items():
        torch.testing.assert_close(got[name], g, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("chunk", [3, 5, 64])
def test_grad_cache_equals_the_full_batch_gradient_with_dropout(chunk):
    cfg = objective_cfg()
    module = toy_module(cfg, chunk)
    batch = toy_batch(module, range(B))
    loss, got = grad_cached(module, batch, seed=7)
    ref_loss, ref = full_batch(module, batch, chunk, seed=7)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert "objective.losses.infonce.log_tau" in ref
    assert_same_gradients(got, ref)
    # the masks matter (the check can fail): another seed's masks give another gradient
    _, other = full_batch(module, batch, chunk, seed=8)
    assert max((other[n] - g).abs().max().item() for n, g in ref.items()) > 1e-4


def test_grad_cache_with_one_chunk_per_field_is_the_plain_path():
    """chunk_size >= the batch: the same forwards in the same RNG order as ``embedding_batch``."""
    module = toy_module(objective_cfg(), 64)
    batch = toy_batch(module, range(B))
    loss, got = grad_cached(module, batch, seed=3)
    module.zero_grad()
    torch.manual_seed(3)
    total, _ = module.objective(module.embedding_batch(batch))
    total.backward()
    assert loss == pytest.approx(float(total), rel=1e-6)
    assert_same_gradients(got, grads(module))


def test_grad_cache_on_texts_only_batches_and_base_embeddings():
    """A texts-only batch (no query side), and an objective on the base (adapter-off) vectors."""
    module = toy_module(objective_cfg(), 3)
    batch = toy_batch(module, range(B), texts_only=True)
    loss, got = grad_cached(module, batch, seed=1)
    ref_loss, ref = full_batch(module, batch, 3, seed=1)
    assert loss == pytest.approx(ref_loss, rel=1e-6) and ref
    for name, g in ref.items():
        torch.testing.assert_close(got[name], g, rtol=1e-5, atol=1e-6, msg=name)

    module = toy_module(objective_cfg("adapter/classification", learnable_temperature=False), 3)
    assert module.needs_base
    batch = toy_batch(module, range(B))
    loss, got = grad_cached(module, batch, seed=2)
    ref_loss, ref = full_batch(module, batch, 3, seed=2)
    assert loss == pytest.approx(ref_loss, rel=1e-6) and ref
    for name, g in ref.items():
        torch.testing.assert_close(got[name], g, rtol=1e-5, atol=1e-6, msg=name)


def _ddp_rank(rank: int, world: int, init_file: str, out: str, cfg: dict) -> None:
    """One gloo rank: its 4 rows, GradCache in chunks of 3 under DDP, synced as Lightning does it
    (``prepare_for_backward`` before a synced backward, ``no_sync`` for the others)."""
    with gloo_group(rank, world, init_file):
        torch.set_num_threads(1)
        module = toy_module(cfg, 3)
        ddp = torch.nn.parallel.DistributedDataParallel(module)
        syncs = []

        def backward(loss: torch.Tensor) -> None:
            syncs.append(ddp.require_backward_grad_sync)
            prepare_for_backward(ddp, loss)
            loss.backward()

        batch = toy_batch(module, range(4 * rank, 4 * rank + 4))
        module.zero_grad()
        torch.manual_seed(100 + rank)
        total, _ = module.grad_cache_backward(batch, backward=backward, no_sync=ddp.no_sync)
        if rank == 0:
            torch.save({"loss": float(total), "grads": grads(module), "syncs": syncs}, out)


def test_grad_cache_on_two_gloo_ranks_equals_one_process_on_the_global_batch(tmp_path):
    cfg = objective_cfg()
    out = tmp_path / "ddp.pt"
    torch.multiprocessing.spawn(_ddp_rank, args=(2, str(tmp_path / "init"), str(out), cfg), nprocs=2)
    ddp = torch.load(out, weights_only=False)
    # 4 rows per rank, chunks of 3: query 2 + document 2 + negatives (8 texts) 3 backwards; one synced
    assert ddp["syncs"] == [False] * 6 + [True]

    # the reference: one process, the 8 rows, each rank's rows embedded with that rank's RNG stream
    module = toy_module(cfg, 3)
    batch = toy_batch(module, range(B))
    per_rank = []
    for rank in range(2):
        torch.manual_seed(100 + rank)
        per_rank.append(chunked_forward(module, toy_batch(module, range(4 * rank, 4 * rank + 4)), 3))
    q, d, n = (torch.cat(x) for x in zip(*per_rank, strict=True))
    total, _ = module.objective(module.embedding_batch(batch, (q, d, n)))
    total.backward()
    assert ddp["loss"] == pytest.approx(float(total), rel=1e-6)
    assert_same_gradients(ddp["grads"], grads(module))


def test_grad_cache_config_is_checked():
    assert check_grad_cache({}) is None and check_grad_cache({"chunk_size": 1e2}) == 100
    with pytest.raises(ValueError, match=r"module\.grad_cache\.chunk_size .* got 0"):
        check_grad_cache({"chunk_size": 0})
    with pytest.raises(ValueError, match=r"unknown module\.grad_cache keys \['chunk'\]"):
        check_grad_cache({"chunk": 4})


def _gather_rank(rank: int, world: int, init_file: str, out: str) -> None:
    with gloo_group(rank, world, init_file):
        x = torch.randn(8, 2, 3, generator=torch.Generator().manual_seed(0))[4 * rank : 4 * rank + 4]
        x.requires_grad_()
        w = torch.arange(48.0).view(16, 3)
        (gather_with_grad(x).transpose(0, 1).reshape(16, 3) * w).sum().backward()  # a non-contiguous gradient
        torch.save(x.grad, f"{out}.{rank}")


def test_gather_with_grad_sends_non_contiguous_gradients_correctly(tmp_path):
    """Every rank computes the same loss: the gradient of rank r's rows is world x the loss's gradient
    w.r.t. rows [4 r, 4 r + 4) (torch's all_gather mis-sent a non-contiguous gradient before)."""
    out = str(tmp_path / "grad")
    torch.multiprocessing.spawn(_gather_rank, args=(2, str(tmp_path / "init"), out), nprocs=2)
    w = torch.arange(48.0).view(16, 3)
    expected = w.view(2, 8, 3).transpose(0, 1)  # d/dx of sum(x.transpose(0, 1).reshape(16, 3) * w)
    for rank in range(2):
        got = torch.load(f"{out}.{rank}")
        torch.testing.assert_close(got, 2 * expected[4 * rank : 4 * rank + 4], rtol=0, atol=0)


@pytest.mark.slow  # ~3 min on 2 contended cores (5 tiny runs)
def test_trainer_run_with_grad_cache_matches_the_plain_path_and_resumes(tmp_path):
    """Through Lightning (manual optimisation, clipping, lr schedule, global step): one chunk per field
    consumes the RNG as the plain path does, so the per-step losses are the plain run's; with chunks
    of 3, a run stopped at step 2 and resumed from last.ckpt continues as the unbroken run."""
    common = ["experiment=ablation/combined", "scheduler=warmup_cosine", "scheduler.warmup_steps=2"]
    runs = {}
    for name, extra in {
        "plain": [],
        "one_chunk": ["module.grad_cache.chunk_size=64"],
        "chunked": ["module.grad_cache.chunk_size=3"],
    }.items():
        rec = LossRecorder()
        summary = train(run_cfg(tmp_path / name, *common, *extra, "trainer.max_steps=4"), callbacks=[rec])
        runs[name] = rec.losses
        assert summary["steps"] == 4, name
    assert sorted(runs["one_chunk"]) == [1, 2, 3, 4]
    for step, loss in runs["plain"].items():
        assert runs["one_chunk"][step] == pytest.approx(loss, rel=1e-5), step
    resumed = LossRecorder()
    chunked = [*common, "module.grad_cache.chunk_size=3"]
    train(run_cfg(tmp_path / "resumed", *chunked, "trainer.max_steps=2"))
    train(run_cfg(tmp_path / "resumed", *chunked, "trainer.max_steps=4"), callbacks=[resumed])
    assert sorted(resumed.losses) == [3, 4]
    for step in (3, 4):
        assert resumed.losses[step] == pytest.approx(runs["chunked"][step], rel=1e-6), step


@pytest.mark.slow  # 2 ddp_spawn runs
def test_ddp_spawn_run_with_grad_cache_matches_the_plain_ddp_run(tmp_path):
    """Lightning's DDP (2 gloo ranks, find_unused_parameters=False): GradCache's one synced backward per
    step reaches every parameter (else DDP raises at the next step) and gives the plain run's losses."""
    common = [
        "trainer=ddp_cpu",
        "experiment=ablation/combined",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "trainer.log_every_n_steps=1",
    ]
    losses = {}
    for name, extra in {"plain": [], "grad_cache": ["module.grad_cache.chunk_size=64"]}.items():
        train(run_cfg(tmp_path / name, *common, *extra))
        curves = read_curves(tmp_path / name / "runs" / "combined-seed0")
        losses[name] = curves[curves["name"] == "train/loss"].set_index("step")["value"]
    assert len(losses["plain"]) == 3
    assert losses["grad_cache"].to_numpy() == pytest.approx(losses["plain"].to_numpy(), rel=1e-5)
