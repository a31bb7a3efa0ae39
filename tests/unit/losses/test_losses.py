"""Loss math against explicit Python loops, gradients (gradcheck in float64) and the documented edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from jina5.losses import (
    BinaryAware,
    CoSENT,
    EmbeddingBatch,
    EmbeddingDistillation,
    GlobalOrthogonal,
    InfoNCE,
    Matryoshka,
    RelationalDistillation,
    ScoreDistillation,
)
from jina5.losses.relational import relational_loss_from_distances

# ---------------------------------------------------------------- plain-Python reference helpers


def L(t: torch.Tensor) -> list:
    return t.detach().double().tolist()


def dot(a: list[float], b: list[float]) -> float:
    return sum(p * q for p, q in zip(a, b, strict=True))


def norm(a: list[float]) -> float:
    return math.sqrt(dot(a, a))


def cos(a: list[float], b: list[float]) -> float:
    return dot(a, b) / (norm(a) * norm(b))


def unitl(a: list[float]) -> list[float]:
    n = norm(a)
    return [v / n for v in a]


def linear(w: list[list[float]], b: list[float] | None, z: list[float]) -> list[float]:
    """w: (out, in) with in == len(z)."""
    return [dot(row, z) + (b[r] if b is not None else 0.0) for r, row in enumerate(w)]


def rand(*shape: int, seed: int = 0, unit: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    return torch.nn.functional.normalize(x, dim=-1) if unit else x


def make_batch(
    b: int = 4, d: int = 5, k: int = 0, dt: int | None = None, seed: int = 0, **kw
) -> EmbeddingBatch:
    fields = dict(query=rand(b, d, seed=seed), document=rand(b, d, seed=seed + 1))
    if k:
        fields["negatives"] = rand(b, k, d, seed=seed + 2)
    if dt:
        fields["teacher_query"] = rand(b, dt, seed=seed + 3)
        fields["teacher_document"] = rand(b, dt, seed=seed + 4)
    fields.update(kw)
    return EmbeddingBatch(**fields)


# ---------------------------------------------------------------- EmbeddingBatch


def test_batch_validates_shapes_and_maps_student_side_only():
    b = make_batch(3, 4, k=2, dt=6)
    with pytest.raises(ValueError, match="document"):
        EmbeddingBatch(query=rand(3, 4), document=rand(2, 4))
    with pytest.raises(ValueError, match="negatives"):
        b.replace(negatives=rand(3, 4))
    with pytest.raises(ValueError, match="scores"):
        b.replace(scores=torch.zeros(4))
    m = b.map_student(lambda z: z[..., :2] * 2)
    assert m.query.shape == (3, 2) and m.document.shape == (3, 2) and m.negatives.shape == (3, 2, 2)
    assert m.teacher_query is b.teacher_query and m.teacher_document is b.teacher_document
    assert torch.equal(m.query, b.query[:, :2] * 2)
    assert b.query.shape == (3, 4)  # original untouched
    assert m.batch_size == 3 and m.dim == 2


# ---------------------------------------------------------------- distillation


def _set_proj(loss: EmbeddingDistillation, seed: int = 7) -> None:
    with torch.no_grad():
        loss.proj.weight.copy_(rand(*loss.proj.weight.shape, seed=seed, unit=False))
        loss.proj.bias.copy_(rand(loss.proj.bias.shape[0], seed=seed + 1, unit=False))


def test_distill_matches_loop_student_side():
    batch = make_batch(3, 4, dt=6)
    loss = EmbeddingDistillation(4, 6).double()
    _set_proj(loss)
    w, bias = L(loss.proj.weight), L(loss.proj.bias)
    expected = 0.0
    for i in range(3):
        for s, t in ((batch.query, batch.teacher_query), (batch.document, batch.teacher_document)):
            expected += 1.0 - cos(linear(w, bias, L(s[i])), L(t[i]))
    assert loss(batch).item() == pytest.approx(expected, rel=1e-10)


def test_distill_is_a_sum_not_a_mean():
    batch = make_batch(4, 6, dt=6)
    loss = EmbeddingDistillation(6, 6).double()
    double = EmbeddingBatch(
        query=torch.cat([batch.query, batch.query]),
        document=torch.cat([batch.document, batch.document]),
        teacher_query=torch.cat([batch.teacher_query, batch.teacher_query]),
        teacher_document=torch.cat([batch.teacher_document, batch.teacher_document]),
    )
    assert loss(double).item() == pytest.approx(2 * loss(batch).item(), rel=1e-12)


def test_distill_identity_init_and_student_equals_teacher_gives_zero():
    loss = EmbeddingDistillation(5, 5).double()
    assert torch.equal(loss.proj.weight, torch.eye(5, dtype=torch.float64))
    assert torch.equal(loss.proj.bias, torch.zeros(5, dtype=torch.float64))
    batch = make_batch(4, 5)
    batch = batch.replace(teacher_query=batch.query.clone(), teacher_document=batch.document.clone())
    assert loss(batch).item() == pytest.approx(0.0, abs=1e-12)


def test_distill_semi_orthogonal_init_is_seeded_and_isometric():
    up = EmbeddingDistillation(4, 6, seed=3).double()
    w = up.proj.weight  # (6, 4): orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(4, dtype=torch.float64), atol=1e-6)
    assert torch.equal(EmbeddingDistillation(4, 6, seed=3).proj.weight, up.proj.weight.float())
    assert not torch.equal(EmbeddingDistillation(4, 6, seed=4).proj.weight, up.proj.weight.float())
    a, b = rand(2, 4, seed=9)
    pa, pb = up.project_student(a), up.project_student(b)
    assert torch.nn.functional.cosine_similarity(pa, pb, dim=0).item() == pytest.approx(
        cos(L(a), L(b)), abs=1e-6
    )
    down = EmbeddingDistillation(6, 4).double().proj.weight  # (4, 6): orthonormal rows
    assert torch.allclose(down @ down.T, torch.eye(4, dtype=torch.float64), atol=1e-6)


def test_distill_truncated_input_uses_first_columns():
    batch = make_batch(3, 6, dt=5)
    loss = EmbeddingDistillation(6, 5).double()
    _set_proj(loss)
    d = 2
    short = batch.map_student(lambda z: torch.nn.functional.normalize(z[..., :d], dim=-1))
    w = [row[:d] for row in L(loss.proj.weight)]
    bias = L(loss.proj.bias)
    expected = sum(
        1.0 - cos(linear(w, bias, L(s[i])), L(t[i]))
        for i in range(3)
        for s, t in ((short.query, batch.teacher_query), (short.document, batch.teacher_document))
    )
    assert loss(short).item() == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="student dim 6 > student_dim=4"):
        EmbeddingDistillation(4, 5).double()(batch)


def test_distill_teacher_side_projection():
    batch = make_batch(3, 4, dt=6)
    loss = EmbeddingDistillation(4, 6, side="teacher").double()
    assert loss.proj.weight.shape == (4, 6)  # teacher_dim -> student_dim
    _set_proj(loss)
    w, bias = L(loss.proj.weight), L(loss.proj.bias)
    expected = sum(
        1.0 - cos(L(s[i]), linear(w, bias, L(t[i])))
        for i in range(3)
        for s, t in ((batch.query, batch.teacher_query), (batch.document, batch.teacher_document))
    )
    value = loss(batch)
    assert value.item() == pytest.approx(expected, rel=1e-10)
    value.backward()
    assert loss.proj.weight.grad is not None and loss.proj.weight.grad.abs().sum() > 0
    # truncated student: compared with the first d outputs of psi(t)
    d = 3
    short = batch.map_student(lambda z: torch.nn.functional.normalize(z[..., :d], dim=-1))
    expected = sum(
        1.0 - cos(L(s[i]), linear(w[:d], bias[:d], L(t[i])))
        for i in range(3)
        for s, t in ((short.query, batch.teacher_query), (short.document, batch.teacher_document))
    )
    assert loss(short).item() == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="side"):
        EmbeddingDistillation(4, 6, side="both")


def test_distill_frozen_and_no_bias():
    loss = EmbeddingDistillation(4, 6, trainable=False)
    assert not any(p.requires_grad for p in loss.parameters())
    nb = EmbeddingDistillation(4, 6, bias=False)
    assert nb.proj.bias is None
    nb.double()(make_batch(3, 4, dt=6))  # runs without a bias


def test_distill_needs_teacher_vectors():
    with pytest.raises(ValueError, match="teacher_query"):
        EmbeddingDistillation(5, 5).double()(make_batch(3, 5))
    with pytest.raises(ValueError, match="teacher_dim=7"):
        EmbeddingDistillation(5, 7).double()(make_batch(3, 5, dt=6))


# ---------------------------------------------------------------- InfoNCE


def _infonce_direction(a, b, tau, b_ids=None, negs=None, share=False) -> float:
    """-mean_i log(e^{cos(a_i, b_i)/tau} / (that + sum_{j != i, b_j not a copy of b_i} e^{cos(a_i, b_j)/tau}
    + sum over the hard negatives of row i (of every row when shared) of e^{cos(a_i, n)/tau}))."""
    n = len(a)
    total = 0.0
    for i in range(n):
        pos = math.exp(cos(a[i], b[i]) / tau)
        denom = pos
        for j in range(n):
            if j == i or (b_ids is not None and b_ids[j] == b_ids[i]):
                continue
            denom += math.exp(cos(a[i], b[j]) / tau)
        if negs is not None:
            for r in range(n) if share else [i]:
                for x in negs[r]:
                    denom += math.exp(cos(a[i], x) / tau)
        total += -math.log(pos / denom)
    return total / n


def infonce_loop(batch, tau, share=False, bidirectional=False, mask=True) -> float:
    q, d = L(batch.query), L(batch.document)
    negs = L(batch.negatives) if batch.negatives is not None else None
    qids = L(batch.query_ids) if (mask and batch.query_ids is not None) else None
    dids = L(batch.document_ids) if (mask and batch.document_ids is not None) else None
    loss = _infonce_direction(q, d, tau, dids, negs, share)
    if bidirectional:
        loss += _infonce_direction(d, q, tau, qids)
    return loss


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("k", [0, 2])
def test_infonce_matches_loop(share, bidirectional, k):
    batch = make_batch(4, 5, k=k)
    loss = InfoNCE(temperature=0.1, share_negatives=share, bidirectional=bidirectional)
    expected = infonce_loop(batch, 0.1, share=share, bidirectional=bidirectional)
    assert loss(batch).item() == pytest.approx(expected, rel=1e-10)


def test_infonce_paper_temperature_matches_loop():
    batch = make_batch(3, 6, k=1, seed=5)
    assert InfoNCE()(batch).item() == pytest.approx(infonce_loop(batch, 0.02), rel=1e-9)


def test_infonce_duplicate_masking_changes_value_as_the_loop_says():
    ids = torch.tensor([10, 11, 10, 12])
    base = make_batch(4, 5, k=2)
    batch = base.replace(document_ids=ids, query_ids=torch.tensor([1, 1, 2, 3]))
    for bidir in (False, True):
        loss = InfoNCE(temperature=0.1, bidirectional=bidir)
        masked, unmasked = loss(batch).item(), loss(base).item()
        assert masked == pytest.approx(infonce_loop(batch, 0.1, bidirectional=bidir), rel=1e-10)
        assert unmasked == pytest.approx(infonce_loop(base, 0.1, bidirectional=bidir, mask=False), rel=1e-10)
        assert masked < unmasked  # fewer terms in the denominators
        off = InfoNCE(temperature=0.1, bidirectional=bidir, mask_duplicates=False)
        assert off(batch).item() == pytest.approx(unmasked, rel=1e-12)
    # unique ids mask nothing
    uniq = base.replace(document_ids=torch.arange(4), query_ids=torch.arange(4))
    assert InfoNCE(0.1)(uniq).item() == pytest.approx(InfoNCE(0.1)(base).item(), rel=1e-12)


def test_infonce_classification_form():
    """Paper loss 6 = bidirectional + shared negatives: q->d sees all positives and all negatives."""
    batch = make_batch(4, 5, k=3, seed=2)
    tau = 0.02
    q, d, n = L(batch.query), L(batch.document), L(batch.negatives)
    all_docs = d + [v for row in n for v in row]
    qd = sum(
        -math.log(math.exp(cos(q[i], d[i]) / tau) / sum(math.exp(cos(q[i], c) / tau) for c in all_docs))
        for i in range(4)
    )
    dq = sum(
        -math.log(math.exp(cos(d[i], q[i]) / tau) / sum(math.exp(cos(d[i], c) / tau) for c in q))
        for i in range(4)
    )
    loss = InfoNCE(bidirectional=True, share_negatives=True)
    assert loss(batch).item() == pytest.approx((qd + dq) / 4, rel=1e-9)


def test_infonce_learnable_temperature_gets_gradient_and_is_clamped():
    loss = InfoNCE(learnable_temperature=True).double()
    assert isinstance(loss.log_tau, torch.nn.Parameter)
    assert loss.temperature.item() == pytest.approx(0.02)
    assert loss.log_values()["temperature"].item() == pytest.approx(0.02)
    loss(make_batch(4, 5, k=1)).backward()
    assert loss.log_tau.grad is not None and loss.log_tau.grad.item() != 0.0
    fixed = InfoNCE()
    assert list(fixed.parameters()) == [] and fixed.temperature.item() == 0.02
    with torch.no_grad():
        loss.log_tau.fill_(math.log(1e-6))
    assert loss.temperature.item() == pytest.approx(1e-3)
    with torch.no_grad():
        loss.log_tau.fill_(math.log(50.0))
    assert loss.temperature.item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="temperature"):
        InfoNCE(temperature=5.0)


# ---------------------------------------------------------------- GOR


def test_gor_matches_loop_and_is_zero_on_orthonormal():
    batch = make_batch(4, 6)
    expected = 0.0
    for side in (L(batch.query), L(batch.document)):
        pairs = [dot(side[i], side[j]) ** 2 for i in range(4) for j in range(4) if i != j]
        expected += sum(pairs) / len(pairs)
    assert GlobalOrthogonal()(batch).item() == pytest.approx(expected, rel=1e-10)
    q, _ = torch.linalg.qr(rand(6, 4, unit=False))  # 4 orthonormal columns in R^6
    ortho = EmbeddingBatch(query=q.T.contiguous(), document=torch.eye(6, dtype=torch.float64)[:4])
    assert GlobalOrthogonal()(ortho).item() == pytest.approx(0.0, abs=1e-12)
    one = EmbeddingBatch(query=rand(1, 4), document=rand(1, 4))
    assert GlobalOrthogonal()(one).item() == 0.0


# ---------------------------------------------------------------- CoSENT


def cosent_loop(batch, tau) -> float:
    q, d, s = L(batch.query), L(batch.document), L(batch.scores)
    c = [cos(q[i], d[i]) for i in range(len(q))]
    total = 1.0
    for i in range(len(q)):
        for j in range(len(q)):
            if s[i] > s[j]:
                total += math.exp((c[j] - c[i]) / tau)
    return math.log(total)


def test_cosent_matches_loop_and_needs_scores():
    batch = make_batch(4, 5, scores=torch.tensor([0.1, 0.9, 0.5, 0.5], dtype=torch.float64))
    for tau in (0.05, 0.5):
        assert CoSENT(tau)(batch).item() == pytest.approx(cosent_loop(batch, tau), rel=1e-10)
    with pytest.raises(ValueError, match="scores"):
        CoSENT()(make_batch(4, 5))
    equal = batch.replace(scores=torch.ones(4, dtype=torch.float64))
    assert CoSENT()(equal).item() == 0.0


def test_cosent_ordering():
    batch = make_batch(4, 5)
    c = (batch.query * batch.document).sum(-1)
    agree, disagree = batch.replace(scores=c.clone()), batch.replace(scores=-c)
    assert CoSENT()(agree).item() < math.log(2) < CoSENT()(disagree).item()
    # stable at a tiny temperature: no overflow
    assert torch.isfinite(CoSENT(1e-4)(disagree))


# ---------------------------------------------------------------- relational


def relational_loop(s: list[list[float]], t: list[list[float]]) -> float:
    m = len(s)
    ds = [[1 - cos(s[i], s[j]) for j in range(m)] for i in range(m)]
    dt = [[1 - cos(t[i], t[j]) for j in range(m)] for i in range(m)]
    mu_s = sum(map(sum, ds)) / m**2
    mu_t = sum(map(sum, dt)) / m**2
    return sum((ds[i][j] / mu_s - dt[i][j] / mu_t) ** 2 for i in range(m) for j in range(m)) / m**2


def test_relational_matches_loop_base_and_teacher():
    batch = make_batch(3, 4, dt=6, base_query=rand(3, 5, seed=11), base_document=rand(3, 5, seed=12))
    s = L(batch.query) + L(batch.document)
    base = RelationalDistillation("base")(batch).item()
    assert base == pytest.approx(relational_loop(s, L(batch.base_query) + L(batch.base_document)), rel=1e-10)
    teacher = RelationalDistillation("teacher")(batch).item()
    assert teacher == pytest.approx(
        relational_loop(s, L(batch.teacher_query) + L(batch.teacher_document)), rel=1e-10
    )
    with pytest.raises(ValueError, match="base_query"):
        RelationalDistillation("base")(make_batch(3, 4))
    with pytest.raises(ValueError, match="reference"):
        RelationalDistillation("model")


def test_relational_includes_negatives():
    batch = make_batch(3, 4, k=2, base_query=rand(3, 5, seed=11), base_document=rand(3, 5, seed=12))
    with pytest.raises(ValueError, match="base_negatives"):
        RelationalDistillation("base")(batch)
    batch = batch.replace(base_negatives=rand(3, 2, 5, seed=13))
    s = L(batch.query) + L(batch.document) + [v for row in L(batch.negatives) for v in row]
    t = L(batch.base_query) + L(batch.base_document) + [v for row in L(batch.base_negatives) for v in row]
    assert RelationalDistillation()(batch).item() == pytest.approx(relational_loop(s, t), rel=1e-10)
    no_neg = RelationalDistillation(include_negatives=False)(batch).item()
    assert no_neg == pytest.approx(relational_loop(s[:6], t[:6]), rel=1e-10)


def test_relational_zero_when_equal_and_scale_invariant():
    batch = make_batch(4, 5)
    same = batch.replace(base_query=batch.query.clone(), base_document=batch.document.clone())
    assert RelationalDistillation()(same).item() == pytest.approx(0.0, abs=1e-12)
    x, y = rand(5, 3, seed=1), rand(5, 4, seed=2)
    ds, dt = 1 - x @ x.T, 1 - y @ y.T
    ref = relational_loss_from_distances(ds, dt).item()
    assert ref > 0
    assert relational_loss_from_distances(3.7 * ds, dt).item() == pytest.approx(ref, rel=1e-12)
    assert relational_loss_from_distances(ds, 0.2 * dt).item() == pytest.approx(ref, rel=1e-12)
    # identical vectors: mu = 0 is guarded, no NaN
    flat = rand(1, 5).expand(5, 5)
    assert torch.isfinite(relational_loss_from_distances(1 - flat @ flat.T, dt))


# ---------------------------------------------------------------- score distillation


def score_loop(batch, tau, exclude_diagonal=True) -> float:
    total = 0.0
    for s, t in ((L(batch.query), L(batch.teacher_query)), (L(batch.document), L(batch.teacher_document))):
        b = len(s)
        for i in range(b):
            cols = [j for j in range(b) if not (exclude_diagonal and j == i)]
            zs = sum(math.exp(cos(s[i], s[j]) / tau) for j in cols)
            zt = sum(math.exp(cos(t[i], t[j]) / tau) for j in cols)
            for j in range(b):
                ps = math.exp(cos(s[i], s[j]) / tau) / zs if j in cols else 0.0
                pt = math.exp(cos(t[i], t[j]) / tau) / zt if j in cols else 0.0
                total += (ps - pt) ** 2 / b**2
    return total


@pytest.mark.parametrize("exclude_diagonal", [True, False])
def test_score_distill_matches_loop(exclude_diagonal):
    batch = make_batch(4, 5, dt=6)
    for tau in (0.02, 0.3):
        value = ScoreDistillation(tau, exclude_diagonal=exclude_diagonal)(batch).item()
        assert value == pytest.approx(score_loop(batch, tau, exclude_diagonal), rel=1e-9)


def test_score_distill_zero_when_equal_and_needs_teacher():
    batch = make_batch(4, 5)
    same = batch.replace(teacher_query=batch.query.clone(), teacher_document=batch.document.clone())
    assert ScoreDistillation()(same).item() == pytest.approx(0.0, abs=1e-14)
    with pytest.raises(ValueError, match="teacher_query"):
        ScoreDistillation()(batch)


# ---------------------------------------------------------------- wrappers


def test_matryoshka_equals_manual_slice_renormalise_weighted_sum():
    batch = make_batch(4, 6, k=2)
    inner = InfoNCE(temperature=0.1)
    dims, weights = [2, 4, 6], [0.5, 1.0, 2.0]
    manual = 0.0
    for d, w in zip(dims, weights, strict=True):
        sliced = EmbeddingBatch(
            query=torch.tensor([unitl(r[:d]) for r in L(batch.query)], dtype=torch.float64),
            document=torch.tensor([unitl(r[:d]) for r in L(batch.document)], dtype=torch.float64),
            negatives=torch.tensor(
                [[unitl(v[:d]) for v in row] for row in L(batch.negatives)], dtype=torch.float64
            ),
        )
        manual += w * infonce_loop(sliced, 0.1)
    assert Matryoshka(inner, dims, weights)(batch).item() == pytest.approx(manual, rel=1e-10)
    equal = Matryoshka(inner, dims)(batch).item()
    assert equal == pytest.approx(
        sum(
            inner(batch.map_student(lambda z, d=d: z[..., :d] / z[..., :d].norm(dim=-1, keepdim=True))).item()
            for d in dims
        ),
        rel=1e-12,
    )


def test_matryoshka_errors_and_teacher_untouched():
    batch = make_batch(3, 4, dt=6)
    with pytest.raises(ValueError, match=r"\[8\]"):
        Matryoshka(GlobalOrthogonal(), [2, 8])(batch)
    with pytest.raises(ValueError, match="weights"):
        Matryoshka(GlobalOrthogonal(), [2, 4], [1.0])
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, b):
            seen.append(b)
            return b.query.sum()

    Matryoshka(Spy(), [2, 3])(batch)
    assert [s.query.shape[1] for s in seen] == [2, 3]
    assert all(s.teacher_query is batch.teacher_query for s in seen)
    for s in seen:  # the contract holds inside: truncated student vectors are re-normalised
        assert torch.allclose(s.query.norm(dim=-1), torch.ones(3, dtype=torch.float64))
        assert torch.allclose(s.query, torch.nn.functional.normalize(batch.query[:, : s.dim], dim=-1))
    assert Matryoshka(EmbeddingDistillation(4, 6), [2]).requires == ("teacher_query", "teacher_document")


def test_matryoshka_with_distillation_trains_one_shared_projection():
    batch = make_batch(3, 6, dt=5)
    loss = EmbeddingDistillation(6, 5).double()
    _set_proj(loss)
    Matryoshka(loss, [2, 6])(batch).backward()
    g = loss.proj.weight.grad
    assert g.shape == (5, 6) and g[:, :2].abs().sum() > 0 and g[:, 2:].abs().sum() > 0


def test_binary_aware_forward_and_straight_through_gradient():
    batch = make_batch(4, 6, k=1, dt=6)
    inner = InfoNCE(temperature=0.1)
    q = batch.query.clone().requires_grad_(True)
    d = batch.document.clone().requires_grad_(True)
    n = batch.negatives.clone().requires_grad_(True)
    value = BinaryAware(inner)(batch.replace(query=q, document=d, negatives=n))
    # forward: the inner loss on sign(z)/sqrt(D)
    bq, bd, bn = (torch.sign(t.detach()) / math.sqrt(6) for t in (q, d, n))
    for t in (bq, bd, bn):
        t.requires_grad_(True)
    on_signs = inner(EmbeddingBatch(query=bq, document=bd, negatives=bn))
    assert value.item() == pytest.approx(on_signs.item(), rel=1e-12)
    assert value.item() == pytest.approx(
        infonce_loop(EmbeddingBatch(query=bq.detach(), document=bd.detach(), negatives=bn.detach()), 0.1),
        rel=1e-10,
    )
    # backward: d/dz = d/db evaluated at b (straight-through)
    value.backward()
    on_signs.backward()
    for z, b in ((q, bq), (d, bd), (n, bn)):
        assert torch.allclose(z.grad, b.grad, rtol=1e-10, atol=1e-14)
        assert z.grad.abs().sum() > 0
    assert BinaryAware(CoSENT()).requires == ("scores",)
    assert BinaryAware(inner).log_values()["temperature"].item() == pytest.approx(0.1)


# ---------------------------------------------------------------- gradcheck (float64)


def _gradcheck(loss: torch.nn.Module, batch: EmbeddingBatch, fields=("query", "document")) -> None:
    inputs = tuple(
        (getattr(batch, f) + 0.1 * rand(*getattr(batch, f).shape, seed=42 + i, unit=False)).requires_grad_(
            True
        )
        for i, f in enumerate(fields)
    )

    def fn(*xs):
        return loss(batch.replace(**dict(zip(fields, xs, strict=True))))

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_gradcheck_every_loss():
    b3 = make_batch(3, 4, k=2, dt=5, scores=torch.tensor([0.2, 0.7, 0.4], dtype=torch.float64))
    b3 = b3.replace(
        base_query=rand(3, 5, seed=20),
        base_document=rand(3, 5, seed=21),
        base_negatives=rand(3, 2, 5, seed=22),
        document_ids=torch.tensor([1, 2, 1]),
        query_ids=torch.tensor([5, 5, 6]),
    )
    qdn = ("query", "document", "negatives")
    _gradcheck(EmbeddingDistillation(4, 5).double(), b3)
    _gradcheck(EmbeddingDistillation(4, 5, side="teacher").double(), b3)
    _gradcheck(InfoNCE(temperature=0.1, bidirectional=True), b3, qdn)
    _gradcheck(InfoNCE(bidirectional=True, share_negatives=True), b3, qdn)
    _gradcheck(GlobalOrthogonal(), b3)
    _gradcheck(CoSENT(), b3)
    _gradcheck(RelationalDistillation("base"), b3, qdn)
    _gradcheck(RelationalDistillation("teacher", include_negatives=False), b3)
    _gradcheck(ScoreDistillation(temperature=0.1), b3)
    _gradcheck(Matryoshka(InfoNCE(temperature=0.1), [2, 4], [1.0, 0.5]), b3, qdn)
    _gradcheck(Matryoshka(EmbeddingDistillation(4, 5).double(), [3, 4]), b3)


def test_gradcheck_learnable_parameters():
    batch = make_batch(3, 4, k=1, dt=5)
    nce = InfoNCE(temperature=0.1, learnable_temperature=True, bidirectional=True).double()
    log_tau = nce.log_tau.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda lt: functional_call(nce, {"log_tau": lt}, (batch,)), (log_tau,))

    dist = EmbeddingDistillation(4, 5).double()
    _set_proj(dist)
    w = dist.proj.weight.detach().clone().requires_grad_(True)
    b = dist.proj.bias.detach().clone().requires_grad_(True)
    short = batch.map_student(lambda z: torch.nn.functional.normalize(z[..., :3], dim=-1))
    for bt in (batch, short):
        assert torch.autograd.gradcheck(
            lambda w_, b_, bt=bt: functional_call(dist, {"proj.weight": w_, "proj.bias": b_}, (bt,)), (w, b)
        )


# ---------------------------------------------------------------- behaviour


def test_distill_projection_does_not_collapse_to_a_floor():
    """1 - cos after a learnable projection has no 'predict zeros' floor (unlike MSE to unit vectors)."""
    torch.manual_seed(0)
    student = rand(8, 4, seed=1)
    mix = rand(6, 4, seed=2, unit=False)
    teacher = torch.nn.functional.normalize(student @ mix.T, dim=-1)  # a linear teacher, 6-d
    batch = EmbeddingBatch(query=student, document=student, teacher_query=teacher, teacher_document=teacher)
    loss = EmbeddingDistillation(4, 6).double()
    opt = torch.optim.Adam(loss.parameters(), lr=0.05)
    start = loss(batch).item()
    for _ in range(200):
        opt.zero_grad()
        value = loss(batch)
        value.backward()
        opt.step()
    assert value.item() < 1e-3 * start
    assert value.item() / 16 < 1e-3  # mean 1 - cos over the 16 vectors


def test_wrappers_compose():
    batch = make_batch(4, 6)
    inner = GlobalOrthogonal()
    both = Matryoshka(BinaryAware(inner), [2, 6])(batch).item()
    manual = sum(
        inner(batch.map_student(lambda z, d=d: torch.sign(z[..., :d]) / math.sqrt(d))).item() for d in (2, 6)
    )
    assert both == pytest.approx(manual, rel=1e-12)


def test_fit_projection_recovers_a_linear_teacher_and_lowers_the_loss():
    from jina5.losses import EmbeddingBatch, EmbeddingDistillation

    gen = torch.Generator().manual_seed(0)
    s = torch.nn.functional.normalize(torch.randn(200, 8, generator=gen), dim=-1)
    true_w, true_b = torch.randn(12, 8, generator=gen), torch.randn(12, generator=gen)
    t = s @ true_w.T + true_b
    loss = EmbeddingDistillation(8, 12)
    batch = EmbeddingBatch(query=s[:100], document=s[100:], teacher_query=t[:100], teacher_document=t[100:])
    before = float(loss(batch))
    cos = loss.fit_projection(s, t, ridge=1e-8)
    assert cos > 0.9999
    assert torch.allclose(loss.proj.weight, true_w, atol=1e-4) and torch.allclose(
        loss.proj.bias, true_b, atol=1e-4
    )
    assert float(loss(batch)) < 1e-3 < before
    with pytest.raises(ValueError, match="student-side"):
        EmbeddingDistillation(8, 12, side="teacher").fit_projection(s, t)


def meta_batch(b: int = 6, d: int = 8, t: int = 12, k: int = 2):
    """A batch of every field on the meta device (a stand-in for cuda: a tensor made on the CPU
    inside a loss meets it and raises, as it would on a GPU)."""
    from jina5.losses import EmbeddingBatch

    def m(*shape):
        return torch.randn(*shape, device="meta")

    return EmbeddingBatch(
        query=m(b, d),
        document=m(b, d),
        negatives=m(b, k, d),
        teacher_query=m(b, t),
        teacher_document=m(b, t),
        scores=m(b),
        query_ids=torch.arange(b, device="meta"),
        document_ids=torch.arange(b, device="meta"),
        base_query=m(b, d),
        base_document=m(b, d),
        base_negatives=m(b, k, d),
    )


def test_the_projection_warm_start_and_its_init_keep_their_inputs_device():
    """Issue 25, item 2: fit_projection built its ridge penalty with torch.eye on the CPU, so on a GPU
    it met cuda inputs and raised before step 0 (meta stands in for cuda). The fit, its returned mean
    cosine and psi stay on the inputs' device, in float32."""
    from jina5.losses import EmbeddingDistillation
    from jina5.losses.distill import semi_orthogonal_

    for teacher_dim in (8, 12):  # the identity init and the semi-orthogonal one
        loss = EmbeddingDistillation(8, teacher_dim).to("meta")
        cos = loss.fit_projection(
            torch.randn(20, 8, device="meta"), torch.randn(20, teacher_dim, device="meta")
        )
        assert (cos.device.type, cos.dtype, cos.shape) == ("meta", torch.float32, torch.Size([]))
        assert loss.proj.weight.device.type == loss.proj.bias.device.type == "meta"
        assert loss.proj.weight.shape == (teacher_dim, 8)
        weight = semi_orthogonal_(torch.empty(teacher_dim, 8, device="meta", dtype=torch.bfloat16), 0)
        assert (weight.device.type, weight.dtype) == ("meta", torch.bfloat16)


def test_every_loss_computes_on_its_inputs_device(monkeypatch):
    """No loss makes a tensor on another device than its inputs' (the masks, the penalty, the zeros)."""
    import torch.fx.experimental._config as fx_config

    # boolean-mask indexing on meta (GOR's off-diagonal): a stand-in size, the device is what is checked
    monkeypatch.setattr(fx_config, "meta_nonzero_assume_all_nonzero", True)
    losses = [
        CoSENT(),
        EmbeddingDistillation(8, 12),
        GlobalOrthogonal(),
        InfoNCE(mask_duplicates=True, learnable_temperature=True),
        InfoNCE(mask_duplicates=True),
        RelationalDistillation(),
        ScoreDistillation(),
        Matryoshka(InfoNCE(), dims=[4, 8]),
        BinaryAware(InfoNCE()),
    ]
    batch = meta_batch()
    for loss in losses:
        out = loss.to("meta")(batch)
        assert (out.device.type, out.shape) == ("meta", torch.Size([])), type(loss).__name__
