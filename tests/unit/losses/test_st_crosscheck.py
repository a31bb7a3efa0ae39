"""Our distillation and GOR losses against sentence-transformers 6's ``EmbedDistillLoss`` and
``GlobalOrthogonalRegularizationLoss``: equal where the formulas are the same (up to the reduction, pinned),
and the differences pinned by number where they are not (docs/paper.md, "Against sentence-transformers 6").

The sentence-transformers losses run their own ``forward`` on a stand-in model whose "embedding" of a
column is the tensor it is handed, so what is compared is their loss code, label handling included.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_model
from sentence_transformers.sentence_transformer.losses import (
    EmbedDistillLoss,
    GlobalOrthogonalRegularizationLoss,
)
from torch import Tensor, nn

from jina5.losses import EmbeddingBatch, EmbeddingDistillation, GlobalOrthogonal
from jina5.runs.init_from import load_stage1_projection
from jina5.training.objective import Objective

B, D, DT = 5, 6, 10  # batch, student dim, teacher dim


class Columns(nn.Module):
    """A stand-in SentenceTransformer: a column's features ``{"emb": (B, d)}`` embed to that tensor."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"sentence_embedding": features["emb"]}

    def get_embedding_dimension(self) -> int:
        return self.dim

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


def rand(*shape: int, seed: int) -> Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return nn.functional.normalize(x, dim=-1).requires_grad_()


def distill_pair(projection: bool = True, seed: int = 0) -> tuple[EmbeddingDistillation, EmbedDistillLoss]:
    """Ours with a seeded random psi, and ST's cosine EmbedDistillLoss with the same weights copied in."""
    dt = DT if projection else D
    ours = EmbeddingDistillation(D, dt).double()
    if projection:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            ours.proj.weight.copy_(torch.randn(dt, D, generator=gen, dtype=torch.float64))
            ours.proj.bias.copy_(torch.randn(dt, generator=gen, dtype=torch.float64))
    theirs = EmbedDistillLoss(Columns(D), distance_metric="cosine", projection_dim=dt if projection else None)
    if projection:
        theirs.double().projection.load_state_dict(ours.proj.state_dict())
    return ours, theirs


# ---------------------------------------------------------------- EmbedDistillLoss


def test_distill_is_st_embed_distill_times_batch_and_columns():
    """ST: mean over the batch of (1 - cos(P s, t)) per column, then the mean over columns. Ours: the
    sum over texts and both sides. So ours = B x 2 x ST, the same for every gradient."""
    ours, theirs = distill_pair()
    q, d, tq, td = rand(B, D, seed=1), rand(B, D, seed=2), rand(B, DT, seed=3), rand(B, DT, seed=4)
    mine = ours(EmbeddingBatch(query=q, document=d, teacher_query=tq, teacher_document=td))
    st = theirs([{"emb": q}, {"emb": d}], torch.stack([tq, td], dim=1))  # labels (B, columns, Dt)
    assert mine.item() == pytest.approx(2 * B * st.item(), rel=1e-12)
    assert 0.1 < st.item() < 2  # a random psi: far from the teacher, so the check is not of two zeros
    g_mine = torch.autograd.grad(mine, [q, d, ours.proj.weight, ours.proj.bias])
    g_st = torch.autograd.grad(st, [q, d, theirs.projection.weight, theirs.projection.bias])
    for a, b in zip(g_mine, g_st, strict=True):
        assert torch.allclose(a, 2 * B * b, rtol=1e-10, atol=1e-14)


def test_texts_only_distill_is_st_single_column_times_batch():
    ours, theirs = distill_pair(seed=5)
    y, ty = rand(B, D, seed=6), rand(B, DT, seed=7)
    mine = ours(EmbeddingBatch(query=None, document=y, teacher_document=ty))
    assert mine.item() == pytest.approx(B * theirs([{"emb": y}], ty).item(), rel=1e-12)  # labels (B, Dt)


def test_without_projection_st_is_ours_at_the_identity_init():
    """Equal dims: ST without a projection compares s with t; ours starts at psi = identity, bias 0."""
    ours, theirs = distill_pair(projection=False)
    assert theirs.projection is None and torch.equal(ours.proj.weight, torch.eye(D, dtype=torch.float64))
    q, d, tq, td = (rand(B, D, seed=s) for s in (8, 9, 10, 11))
    mine = ours(EmbeddingBatch(query=q, document=d, teacher_query=tq, teacher_document=td))
    st = theirs([{"emb": q}, {"emb": d}], torch.stack([tq, td], dim=1))
    assert mine.item() == pytest.approx(2 * B * st.item(), rel=1e-12)


def test_a_truncated_student_takes_our_first_columns_and_breaks_st_projection():
    """Matryoshka: ours maps a d-dim prefix with W[:, :d] (one psi for every dim); ST's projection takes
    the full student dim only, so a truncated embedding fails its matmul."""
    ours, theirs = distill_pair()
    d = 4
    y, ty = rand(B, D, seed=12)[:, :d], rand(B, DT, seed=13)
    mine = ours(EmbeddingBatch(query=None, document=y, teacher_document=ty))
    cos = nn.functional.cosine_similarity(y @ ours.proj.weight[:, :d].T + ours.proj.bias, ty, dim=-1)
    assert mine.item() == pytest.approx((1 - cos).sum().item(), rel=1e-12)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        theirs([{"emb": y}], ty)


def test_projection_files_move_between_st_and_a_stage1_run(tmp_path: Path):
    """psi is laid out as ST's projection (nn.Linear(student_dim, teacher_dim): weight (Dt, D), bias (Dt,)):
    ST's ``save_projection`` file, renamed into a stage-1 checkpoint, is what ``init_from`` loads
    (``load_stage1_projection``), and our psi saved in ST's format is what ST's ``load_projection`` reads."""
    ours, theirs = distill_pair(seed=14)
    theirs.save_projection(tmp_path / "st_projection.safetensors")
    st_tensors = load_file(tmp_path / "st_projection.safetensors")
    assert {k: tuple(v.shape) for k, v in st_tensors.items()} == {"weight": (DT, D), "bias": (DT,)}
    run = tmp_path / "stage1"
    (run / "checkpoints").mkdir(parents=True)
    state = {f"objective.losses.distill.proj.{k}": v for k, v in st_tensors.items()}
    torch.save({"state_dict": state}, run / "checkpoints" / "last.ckpt")

    fresh = EmbeddingDistillation(D, DT).double()
    assert not torch.equal(fresh.proj.weight, ours.proj.weight)
    load_stage1_projection(Objective({"distill": fresh}, {"distill": 1.0}), run)
    assert all(torch.equal(fresh.proj.state_dict()[k], v) for k, v in st_tensors.items())

    save_model(ours.proj, str(tmp_path / "ours.safetensors"))
    back = EmbedDistillLoss(Columns(D), distance_metric="cosine")  # no projection_dim: built from the file
    back.load_projection(tmp_path / "ours.safetensors")
    assert back.projection_dim == DT and torch.equal(back.projection.weight, ours.proj.weight.float())


# ---------------------------------------------------------------- GlobalOrthogonalRegularizationLoss

R = 1 / math.sqrt(2)
# Hand example, d = 2: x has cosines {0, 1/sqrt2, 1/sqrt2} (M1 = sqrt2/3, M2 = 1/3 < 1/d); y is three
# copies of one vector (M1 = M2 = 1 > 1/d). Means over the 6 ordered off-diagonal pairs.
X = [[1.0, 0.0], [0.0, 1.0], [R, R]]
Y = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]


def gor_values(x: Tensor, y: Tensor, **settings) -> tuple[Tensor, Tensor]:
    """(ours, ST's total: the sum of the dict of terms it returns, as its trainer sums them)."""
    theirs = GlobalOrthogonalRegularizationLoss(Columns(x.shape[1]), **settings)
    return GlobalOrthogonal()(EmbeddingBatch(query=x, document=y)), sum(
        theirs([{"emb": x}, {"emb": y}]).values()
    )


def test_gor_on_the_hand_example_ours_st_matched_and_st_default():
    x, y = torch.tensor(X, dtype=torch.float64), torch.tensor(Y, dtype=torch.float64)
    ours, matched = gor_values(x, y, mean_weight=0.0, aggregation="sum")
    assert ours.item() == pytest.approx(1 / 3 + 1, rel=1e-12)  # M2(x) + M2(y)
    assert matched.item() == pytest.approx(0 + (1 - 1 / 2), rel=1e-12)  # relu(1/3 - 1/2) + relu(1 - 1/2)
    _, default = gor_values(x, y)  # mean_weight=1, aggregation="mean"
    m1_sq = ((math.sqrt(2) / 3) ** 2 + 1) / 2  # mean over columns of M1^2 = (2/9 + 1) / 2
    assert default.item() == pytest.approx(m1_sq + (0 + 1 / 2) / 2, rel=1e-12)
    assert default.item() == pytest.approx(31 / 36, rel=1e-12)


def test_gor_is_st_second_moment_sum_plus_two_over_d_above_the_hinge():
    """mean_weight=0, aggregation="sum": ST = sum_sides relu(M2 - 1/d). Where both sides have M2 > 1/d
    that is ours - 2/d: the same gradients, ours offset by a constant."""
    shift = torch.ones(8, dtype=torch.float64)  # a shared direction: large cosines, M2 far above 1/8
    x = nn.functional.normalize(rand(6, 8, seed=20).detach() + shift, dim=-1).requires_grad_()
    y = nn.functional.normalize(rand(6, 8, seed=21).detach() + shift, dim=-1).requires_grad_()
    ours, matched = gor_values(x, y, mean_weight=None, aggregation="sum")
    assert matched.item() > 0.5  # well above the hinge on both sides
    assert ours.item() == pytest.approx(matched.item() + 2 / 8, rel=1e-12)
    for a, b in zip(torch.autograd.grad(ours, [x, y]), torch.autograd.grad(matched, [x, y]), strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)


def test_gor_below_the_hinge_st_stops_and_ours_pushes_on():
    """Nearly orthogonal rows (M2 < 1/d): ST's hinge is 0 with a zero gradient; ours is M2 > 0 and keeps
    pushing the cosines to 0."""
    noise = 0.05 * rand(4, 8, seed=22).detach()
    x = nn.functional.normalize(torch.eye(8, dtype=torch.float64)[:4] + noise, dim=-1).requires_grad_()
    ours, matched = gor_values(x, x.detach().clone().requires_grad_(), mean_weight=0.0, aggregation="sum")
    cos = x.detach() @ x.detach().T
    m2 = cos[~torch.eye(4, dtype=torch.bool)].pow(2).mean().item()
    assert 0 < m2 < 1 / 8
    assert matched.item() == 0.0 and ours.item() == pytest.approx(2 * m2, rel=1e-12)
    assert torch.autograd.grad(ours, x)[0].abs().max() > 1e-4


def test_gor_of_a_single_row_is_zero_in_both():
    one = rand(1, 4, seed=23)
    ours, default = gor_values(one, one)
    assert ours.item() == 0.0 and default.item() == 0.0
