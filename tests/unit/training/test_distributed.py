"""Several ranks (gloo, tiny models): 2 ranks x B == 1 process x 2B, negatives of unequal K across ranks,
losses skipped per batch under DDP(find_unused_parameters=False), and the masked padding itself."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import compose, gloo_group
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel

from jina5.losses import EmbeddingBatch, InfoNCE, RelationalDistillation
from jina5.model.encoder import Encoder
from jina5.model.tiny import tiny_model_and_tokenizer
from jina5.training.distributed import exact_zero
from jina5.training.module import EmbeddingModule
from jina5.training.objective import build_objective

QUERIES = [f"query {i} about {w}" for i, w in enumerate(["cats", "stocks", "rain", "tea"] * 2)]
DOCUMENTS = [f"a document on {w}, number {i}" for i, w in enumerate(["cats", "stocks", "rain", "tea"] * 2)]
NEGATIVES = [f"an unrelated text {i}" for i in range(16)]
TEACHER_DIM = 48
B = 4  # rows per rank; rank r holds rows 4r..4r+3 of the 8

# name -> (objective, scored batch, K on rank 0 and rank 1, gather across ranks); run in this order
STEPS = {
    "combined K 1|2": ("combined", False, (1, 2), True),
    "combined K 2|0": ("combined", False, (2, 0), True),
    "combined K 1|1, no gather": ("combined", False, (1, 1), False),
    "text matching, scored": ("text_matching", True, (1, 2), True),
    "text matching, unscored K 2|1": ("text_matching", False, (2, 1), True),
}


def _objective_cfgs() -> dict[str, dict]:
    return {
        kind: OmegaConf.to_container(compose([f"experiment={experiment}"]).objective, resolve=True)
        for kind, experiment in (
            ("combined", "ablation/combined"),
            ("text_matching", "adapter/text_matching"),
        )
    }


def _toy_module(objective_cfg: dict) -> EmbeddingModule:
    """A tiny BERT student (seeded: the same in every process) in eval mode (no dropout)."""
    model, tokenizer = tiny_model_and_tokenizer("bert", layers=2)
    encoder = Encoder(model, tokenizer=tokenizer, prompts={"query": "Query: ", "document": "Document: "})
    objective = build_objective(objective_cfg, student_dim=encoder.dim, teacher_dim=TEACHER_DIM)
    settings = {"weight_decay_exclude_1d": True, "base_reference_dropout": False, "projection_warm_start": 0}
    return EmbeddingModule(
        encoder, objective, optimizer=torch.optim.SGD, gather_across_devices=True, **settings
    ).eval()


def _negatives(rows: range, k: int) -> list[str]:
    return [NEGATIVES[(3 * i + j) % len(NEGATIVES)] for i in rows for j in range(k)]


def _toy_batch(module: EmbeddingModule, rows: range, k: int, scored: bool) -> dict:
    """The collated batch of ``rows`` with ``k`` hard negatives each (none for k = 0), scores if
    ``scored``, random teacher vectors."""
    teacher = torch.randn(2, 8, TEACHER_DIM, generator=torch.Generator().manual_seed(0))
    idx = torch.tensor(list(rows))
    tokenize = module.encoder.tokenize
    batch = {
        "query": tokenize([QUERIES[i] for i in rows], prompt="query"),
        "document": tokenize([DOCUMENTS[i] for i in rows], prompt="document"),
        "negatives": tokenize(_negatives(rows, k), prompt="document") if k else None,
        "teacher_query": teacher[0, idx],
        "teacher_document": teacher[1, idx],
        "scores": torch.tensor([float(i % 3) for i in rows]) if scored else None,
        "document_ids": idx + 100,
    }
    if k:
        batch["negatives_per_query"] = k
    return batch


class _Total(torch.nn.Module):
    """What DDP wraps: batch -> the objective's total on the (gathered) embedding batch."""

    def __init__(self, module: EmbeddingModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: dict) -> torch.Tensor:
        return self.module.objective(self.module.embedding_batch(batch))[0]


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def _rank(rank: int, world: int, init_file: str, out: str, objective_cfgs: dict) -> None:
    """One gloo rank: every step of STEPS through DDP (default find_unused_parameters=False), then a
    batch whose fields differ across ranks."""
    with gloo_group(rank, world, init_file):
        torch.set_num_threads(1)
        rows = range(B * rank, B * rank + B)
        modules = {kind: _toy_module(cfg) for kind, cfg in objective_cfgs.items()}
        ddp = {kind: DistributedDataParallel(_Total(m)) for kind, m in modules.items()}
        result = {}
        for name, (kind, scored, ks, gather) in STEPS.items():
            module = modules[kind]
            module.gather_across_devices = gather
            module.zero_grad(set_to_none=True)
            loss = ddp[kind](_toy_batch(module, rows, ks[rank], scored))
            loss.backward()
            result[name] = (loss.detach(), _grads(module))
        try:  # scores on rank 0 only: a named error on every rank, no hang
            modules["combined"].gather_across_devices = True
            modules["combined"].embedding_batch(_toy_batch(modules["combined"], rows, 1, scored=rank == 0))
            result["uneven fields"] = "no error"
        except ValueError as err:
            result["uneven fields"] = str(err)
        torch.save(result, f"{out}.{rank}")


def _one_process(module: EmbeddingModule, scored: bool, ks: tuple[int, int]) -> tuple[torch.Tensor, dict]:
    """Loss and gradients of the 8 rows in one process, each rank's negatives padded by hand to the
    larger K with zero vectors and a mask (no mask when both ranks have the same K)."""
    module.zero_grad(set_to_none=True)
    batch = _toy_batch(module, range(2 * B), 0, scored)
    q, d, _ = module.encode_triplet(batch)
    k_max, blocks, masks = max(ks), [], []
    for r, k in enumerate(ks):
        n = d.new_zeros(B, 0, d.shape[1])
        if k:
            tokens = module.encoder.tokenize(_negatives(range(B * r, B * r + B), k), prompt="document")
            n = module.encoder(**tokens).view(B, k, -1)
        blocks.append(torch.cat([n, n.new_zeros(B, k_max - k, n.shape[2])], dim=1))
        masks.append(torch.arange(k_max)[None, :].expand(B, -1) < k)
    fields = {k: batch[k] for k in ("teacher_query", "teacher_document", "scores", "document_ids")}
    eb = EmbeddingBatch(
        query=q,
        document=d,
        negatives=torch.cat(blocks),
        negatives_mask=None if ks[0] == ks[1] else torch.cat(masks),
        **fields,
    )
    total, _ = module.objective(eb)
    total.backward()
    return total.detach(), _grads(module)


def test_two_ranks_equal_one_process_on_the_global_batch_with_uneven_negatives(tmp_path):
    """2 ranks x 4 rows (all-gathered, DDP's gradient averaging) == 1 process x the 8 rows, loss and
    every gradient, for the combined objective and the text-matching adapter's, with a different K
    of hard negatives on each rank (one rank with none); a loss skipped on a batch (the adapter's
    distillation on scored batches) leaves no parameter unused; fields that differ across ranks are
    named. Without the gather the gradient differs (the check can fail)."""
    cfgs = _objective_cfgs()
    out = tmp_path / "ranks.pt"
    torch.multiprocessing.spawn(_rank, args=(2, str(tmp_path / "init"), str(out), cfgs), nprocs=2)
    ranks = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]
    modules = {kind: _toy_module(cfg) for kind, cfg in cfgs.items()}
    for name, (kind, scored, ks, gather) in STEPS.items():
        loss, grads = ranks[0][name]
        ref_loss, ref = _one_process(modules[kind], scored, ks)
        if not gather:
            assert max((grads[n] - g).abs().max().item() for n, g in ref.items()) > 1e-4, name
            continue
        torch.testing.assert_close(ranks[1][name][0], loss, msg=name)  # every rank: the global loss
        torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6, msg=name)
        for n, g in ref.items():
            torch.testing.assert_close(grads[n], g, rtol=1e-5, atol=1e-5, msg=f"{name}: {n}")
        # what one process leaves without a gradient (a skipped loss's parameters) gets an exact zero
        unused = set(grads) - set(ref)
        assert all(torch.equal(grads[n], torch.zeros_like(grads[n])) for n in unused), name
        assert any("distill" in n for n in unused) == scored, (name, unused)
    for rank in ranks:
        assert "['scores'] are present on some ranks and missing on others" in rank["uneven fields"]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("share_negatives", [False, True])
def test_infonce_drops_masked_negatives(share_negatives):
    """InfoNCE on negatives padded with garbage vectors under a mask == the formula over the real
    negatives alone (row 0 has 1, row 1 none, row 2 three), computed term by term."""
    gen = torch.Generator().manual_seed(0)
    x, y, n = (
        torch.randn(3, 8, generator=gen),
        torch.randn(3, 8, generator=gen),
        torch.randn(3, 3, 8, generator=gen),
    )
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    tau = 0.1
    loss = InfoNCE(tau, share_negatives=share_negatives, bidirectional=True)(
        EmbeddingBatch(query=x, document=y, negatives=n, negatives_mask=mask)
    )
    xs, ys, ns = _unit(x), _unit(y), _unit(n)
    expected = 0.0
    for i in range(3):
        hard = ns[mask] if share_negatives else ns[i][mask[i]]
        logits = [float(xs[i] @ ys[j]) / tau for j in range(3)] + [float(xs[i] @ h) / tau for h in hard]
        expected += (math.log(sum(math.exp(v) for v in logits)) - logits[i]) / 3
        back = [float(ys[i] @ xs[j]) / tau for j in range(3)]
        expected += (math.log(sum(math.exp(v) for v in back)) - back[i]) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_relational_distillation_drops_masked_negatives():
    """Padding (garbage under a False mask) changes nothing: == the batch with its real negatives only."""
    gen = torch.Generator().manual_seed(1)
    q, d, n = (torch.randn(*s, 8, generator=gen) for s in ((4,), (4,), (4, 3)))
    bq, bd, bn = (torch.randn(*s, 6, generator=gen) for s in ((4,), (4,), (4, 3)))
    loss = RelationalDistillation("base")
    real = loss(EmbeddingBatch(q, d, n[:, :2], base_query=bq, base_document=bd, base_negatives=bn[:, :2]))
    mask = torch.tensor([[True, True, False]] * 4)
    padded = EmbeddingBatch(q, d, n, base_query=bq, base_document=bd, base_negatives=bn, negatives_mask=mask)
    torch.testing.assert_close(loss(padded), real)
    assert not torch.allclose(loss(padded.replace(negatives_mask=None)), real)  # the padding would count


def test_negatives_mask_shape_is_checked():
    q = torch.randn(2, 4)
    with pytest.raises(ValueError, match="negatives_mask must be None"):
        EmbeddingBatch(q, q, negatives_mask=torch.ones(2, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"negatives_mask must be bool \(2, 3\)"):
        EmbeddingBatch(
            q, q, negatives=torch.randn(2, 3, 4), negatives_mask=torch.ones(2, 2, dtype=torch.bool)
        )


def test_exact_zero_is_zero_even_on_nan_and_passes_a_zero_gradient():
    p = torch.tensor([1.0, float("nan"), float("inf")], requires_grad=True)
    z = exact_zero(p)
    assert z.item() == 0.0 and not math.copysign(1.0, z.item()) < 0
    (torch.tensor(2.5) + z).backward()
    assert torch.equal(p.grad, torch.zeros(3))


TRAIN = [
    "experiment=ablation/combined",
    "trainer.max_steps=3",
    "+trainer.limit_val_batches=0",
    "module.projection_warm_start=32",
]
TWO_RANKS = ["+trainer.strategy=ddp", "trainer.devices=2"]
ONE_RANK = [
    "data.datasets.bbc.batch_size=16",
    "data.datasets.lee_background.batch_size=8",
]  # 2 x SMALL_DATA's
WRITTEN = ("final_state.json", "done.json")


def _train_rank(rank: int, world: int, port: int, root: str, out: str) -> None:
    """One rank launched as its own process (as torchrun, SLURM or Lightning's ``ddp`` launch them: every
    rank runs ``train``), recording which run files and exports it writes."""
    import os

    from helpers import run_cfg
    from lightning.pytorch.utilities import rank_zero_only

    import jina5.atomic
    from jina5.train import train

    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world)}
    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank), NODE_RANK="0")
    rank_zero_only.rank = rank  # what Lightning reads from the environment at import in a launched rank
    torch.set_num_threads(1)
    writes: list[str] = []
    write_text, atomic_file, save_pretrained = (
        Path.write_text,
        jina5.atomic.atomic_file,
        Encoder.save_pretrained,
    )

    def recording_write_text(self: Path, *args, **kwargs):
        writes.append(self.name)
        return write_text(self, *args, **kwargs)

    def recording_atomic_file(path, *args, **kwargs):  # done.json, config.yaml, checkpoints
        writes.append(Path(path).name)
        return atomic_file(path, *args, **kwargs)

    def recording_save_pretrained(self, *args, **kwargs):
        writes.append("encoder/")
        return save_pretrained(self, *args, **kwargs)

    Path.write_text, Encoder.save_pretrained = recording_write_text, recording_save_pretrained
    jina5.atomic.atomic_file = recording_atomic_file
    summary = train(run_cfg(Path(root), *TRAIN, *TWO_RANKS, student="qwen3"))
    torch.save({"summary": summary, "writes": writes}, f"{out}.{rank}")


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def test_two_rank_run_writes_once_and_matches_one_rank_on_the_same_global_batch(tmp_path):
    """Every rank runs ``train`` (``strategy=ddp``); only global rank 0 writes final_state.json,
    done.json and encoder/, each once; every rank returns rank 0's summary; and the run
    directory holds the same files, with the same weights, as one rank on the same global batch (2 x 8
    rows = 16: the sampler gives rank r the r-th half of the rows one rank takes)."""
    import socket

    from helpers import run_cfg
    from safetensors.torch import load_file

    from jina5.train import train

    one = run_cfg(tmp_path / "one", *TRAIN, *ONE_RANK, student="qwen3")
    train(one)  # first: it fills the teacher cache the two ranks then share
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ranks"
    torch.multiprocessing.spawn(_train_rank, args=(2, port, str(tmp_path / "two"), str(out)), nprocs=2)
    ranks = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]
    for name in (*WRITTEN, "encoder/"):
        assert [rank["writes"].count(name) for rank in ranks] == [1, 0], name
    assert ranks[0]["summary"] == ranks[1]["summary"]
    one_dir = Path(one.paths.output_dir)
    two_dir = tmp_path / "two" / "runs" / one_dir.name
    assert ranks[0]["summary"]["steps"] == 3 and ranks[0]["summary"]["run_dir"] == str(two_dir)
    assert _files(two_dir) == _files(one_dir)
    a, b = (
        load_file(one_dir / "encoder" / "model.safetensors"),
        load_file(two_dir / "encoder" / "model.safetensors"),
    )
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)


def test_gather_batch_reads_the_agreement_once(tmp_path):
    """The agreement's all_reduce result reaches the host in one read (one device sync on a GPU), not
    one ``int()`` per flag; the gathered batch is the same."""
    from host_reads import HostReads

    from jina5.training.distributed import gather_batch

    batch = EmbeddingBatch(
        query=torch.randn(3, 4), document=torch.randn(3, 4), negatives=torch.randn(3, 2, 4)
    )
    with gloo_group(0, 1, str(tmp_path / "init")), HostReads() as reads:
        out = gather_batch(batch)
    assert reads.calls == ["tolist"]
    assert torch.equal(out.query, batch.query) and torch.equal(out.negatives, batch.negatives)
    assert out.teacher_document is None and out.negatives_mask is None
