"""Objective: weighted sum, zero weights logged but not trained, key checks, skipping batches."""

from __future__ import annotations

import pytest
import torch

from jina5.losses import CoSENT, EmbeddingBatch, EmbeddingDistillation, GlobalOrthogonal, InfoNCE, Matryoshka
from jina5.training.objective import Objective


def rand(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def leaf_batch(with_teacher: bool = True, scores: bool = False) -> EmbeddingBatch:
    q = rand(4, 5, seed=0).requires_grad_(True)
    d = rand(4, 5, seed=1).requires_grad_(True)
    extra = {}
    if with_teacher:
        extra = dict(teacher_query=rand(4, 6, seed=2), teacher_document=rand(4, 6, seed=3))
    if scores:
        extra["scores"] = torch.tensor([0.1, 0.4, 0.3, 0.9], dtype=torch.float64)
    return EmbeddingBatch(query=q, document=d, **extra)


def losses() -> dict[str, torch.nn.Module]:
    return {
        "infonce": InfoNCE(temperature=0.1),
        "distill": EmbeddingDistillation(5, 6).double(),
        "gor": GlobalOrthogonal(),
    }


def test_weighted_sum_and_parts():
    obj = Objective(losses(), {"infonce": 1.0, "distill": 2.0, "gor": 0.5})
    batch = leaf_batch()
    total, parts = obj(batch)
    assert set(parts) == {"infonce", "distill", "gor"}
    expected = sum(w * obj.losses[n](batch) for n, w in {"infonce": 1.0, "distill": 2.0, "gor": 0.5}.items())
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)
    for name, value in parts.items():  # parts are the unweighted losses
        assert value.item() == pytest.approx(obj.losses[name](batch).item(), rel=1e-12)


def test_zero_weight_is_reported_with_true_value_and_gives_no_gradient():
    batch = leaf_batch()
    obj = Objective(losses(), {"infonce": 1.0, "distill": 2.0, "gor": 0.0})
    total, parts = obj(batch)
    gor_value = GlobalOrthogonal()(batch)
    assert parts["gor"].item() == pytest.approx(gor_value.item(), rel=1e-12) and parts["gor"].item() > 0
    assert not parts["gor"].requires_grad and parts["infonce"].requires_grad
    total.backward()
    got_q, got_d = batch.query.grad.clone(), batch.document.grad.clone()

    ref = leaf_batch()
    ref_losses = losses()
    (ref_losses["infonce"](ref) + 2.0 * ref_losses["distill"](ref)).backward()
    assert torch.equal(got_q, ref.query.grad) and torch.equal(got_d, ref.document.grad)
    # and the zero-weight term really would have changed the gradient
    ref_all = leaf_batch()
    (
        ref_losses["infonce"](ref_all) + 2.0 * ref_losses["distill"](ref_all) + GlobalOrthogonal()(ref_all)
    ).backward()
    assert not torch.allclose(got_q, ref_all.query.grad)


def test_zero_weight_projection_gets_no_gradient():
    obj = Objective(losses(), {"infonce": 1.0, "distill": 0.0, "gor": 1.0})
    total, parts = obj(leaf_batch())
    total.backward()
    assert obj.losses["distill"].proj.weight.grad is None
    assert "distill" in parts


def test_learnable_pieces_are_parameters_of_the_objective():
    obj = Objective(
        {"infonce": InfoNCE(learnable_temperature=True), "distill": EmbeddingDistillation(5, 6)},
        {"infonce": 1, "distill": 1},
    )
    names = {n for n, _ in obj.named_parameters()}
    assert names == {"losses.infonce.log_tau", "losses.distill.proj.weight", "losses.distill.proj.bias"}
    assert set(obj.log_values()) == {"infonce/temperature"}
    wrapped = Objective({"nce": Matryoshka(InfoNCE(temperature=0.05), [2, 4])}, {"nce": 1})
    assert wrapped.log_values()["nce/temperature"].item() == pytest.approx(0.05)


def test_keys_must_match():
    with pytest.raises(ValueError, match="'gor'"):
        Objective(losses(), {"infonce": 1.0, "distill": 1.0})
    with pytest.raises(ValueError, match="'cosent'"):
        Objective(losses(), {"infonce": 1.0, "distill": 1.0, "gor": 1.0, "cosent": 1.0})
    with pytest.raises(ValueError, match="'gor'"):
        Objective(losses(), {"infonce": 1.0, "distill": 1.0, "gor": -1.0})
    with pytest.raises(ValueError, match="'gor'"):
        Objective(losses(), {"infonce": 1.0, "distill": 1.0, "gor": "x"})
    with pytest.raises(TypeError, match="'gor'"):
        Objective({"gor": lambda b: b.query.sum()}, {"gor": 1.0})


def test_missing_inputs_raise_or_skip():
    mixed = {
        "cosent": CoSENT(),
        "infonce": InfoNCE(temperature=0.1),
        "distill": EmbeddingDistillation(5, 6).double(),
    }
    weights = {"cosent": 1.0, "infonce": 1.0, "distill": 2.0}
    strict = Objective(mixed, weights)
    with pytest.raises(ValueError, match=r"'cosent'.*scores"):
        strict(leaf_batch())

    obj = Objective(mixed, weights, skip_missing=True)
    # an InfoNCE + distillation batch (no scores): CoSENT is absent
    batch = leaf_batch()
    total, parts = obj(batch)
    assert set(parts) == {"infonce", "distill"}
    assert total.item() == pytest.approx((parts["infonce"] + 2 * parts["distill"]).item(), rel=1e-12)
    # a graded batch without teacher vectors: only CoSENT
    total, parts = obj(leaf_batch(with_teacher=False, scores=True))
    assert set(parts) == {"cosent", "infonce"}
    assert obj.missing_fields("distill", leaf_batch(with_teacher=False)) == [
        "teacher_query",
        "teacher_document",
    ]


def test_nothing_trainable_ran_gives_constant_zero():
    obj = Objective({"cosent": CoSENT()}, {"cosent": 1.0}, skip_missing=True)
    total, parts = obj(leaf_batch())
    assert parts == {} and total.item() == 0.0 and not total.requires_grad


def test_accepts_hydra_containers():
    from omegaconf import OmegaConf

    obj = Objective(losses(), OmegaConf.create({"infonce": 1, "distill": 2.0, "gor": 0}))
    assert obj.weights == {"infonce": 1.0, "distill": 2.0, "gor": 0.0}


# ---------------------------------------------------------------- build_objective from the real configs
def objective_cfg(*overrides: str):
    from helpers import compose

    return compose(list(overrides)).objective


def test_build_only_the_weighted_losses_in_losses_order_with_the_models_dims():
    from jina5.training.objective import build_objective

    cfg = objective_cfg()
    # the default config defines 4 losses and weights them all; here weights name 2, in another order
    cfg.weights = {"gor": 1.0, "distill": 0.0}
    obj = build_objective(cfg, student_dim=4, teacher_dim=6)
    assert list(obj.losses) == ["distill", "gor"]  # losses order: the construction (RNG) order
    assert obj.weights == {"gor": 1.0, "distill": 0.0}
    distill = obj.losses["distill"]
    assert (distill.student_dim, distill.teacher_dim, distill.proj.weight.shape) == (4, 6, (6, 4))
    assert not distill.proj.weight.requires_grad  # weight 0: built, logged, frozen


def test_build_objective_reproduces_the_default_projection_init():
    """The distillation psi of the default objective: the same bits as a hand-built loss after the
    same seed (nn.Linear's init draws from the global RNG before the seeded semi-orthogonal fill)."""
    from jina5.training.objective import build_objective

    torch.manual_seed(0)
    obj = build_objective(objective_cfg("experiment=ablation/combined"), student_dim=4, teacher_dim=6)
    after_build = torch.rand(3)
    torch.manual_seed(0)
    by_hand = EmbeddingDistillation(4, 6)
    assert torch.equal(obj.losses["distill"].proj.weight, by_hand.proj.weight)
    assert torch.equal(torch.rand(3), after_build)  # the same RNG draws in between
    assert list(obj.losses) == ["distill", "infonce", "gor", "score_distill"]


def test_teacher_dim_missing_is_named_only_for_losses_that_need_it():
    from jina5.training.objective import build_objective

    with pytest.raises(ValueError, match=r"objective\.losses\.distill .*needs the teacher's dim"):
        build_objective(objective_cfg("experiment=ablation/combined"), student_dim=4, teacher_dim=None)
    obj = build_objective(objective_cfg("experiment=adapter/classification"), student_dim=4, teacher_dim=None)
    assert list(obj.losses) == ["infonce", "relational"]


def test_weights_naming_an_undefined_loss_are_named():
    from jina5.training.objective import build_objective

    cfg = objective_cfg("+objective.weights.cosent=1.0")
    with pytest.raises(KeyError, match=r"objective\.weights names \['cosent'\]"):
        build_objective(cfg, student_dim=4, teacher_dim=6)


# ---------------------------------------------------------------- texts-only batches (distillation text)
def texts_only_batch(with_teacher: bool = True) -> EmbeddingBatch:
    """4 single texts (no queries, no pairs): student (4, 5) in the document field, teacher (4, 6)."""
    d = rand(4, 5, seed=1).requires_grad_(True)
    teacher = {"teacher_document": rand(4, 6, seed=3)} if with_teacher else {}
    return EmbeddingBatch(query=None, document=d, **teacher)


def every_loss() -> dict[str, torch.nn.Module]:
    from jina5.losses import RelationalDistillation, ScoreDistillation

    return {
        **losses(),
        "score_distill": ScoreDistillation(temperature=0.1),
        "cosent": CoSENT(),
        "relational": RelationalDistillation(),
    }


def test_texts_only_batches_train_distillation_alone_on_their_texts():
    """Every pair loss is skipped (strict skip_missing=False does not raise), distillation is the
    hand-computed sum over the texts alone: L = sum_i (1 - cos(psi(d_i), t_i))."""
    weights = {
        "infonce": 1.0,
        "distill": 2.0,
        "gor": 1.0,
        "score_distill": 1.0,
        "cosent": 1.0,
        "relational": 1.0,
    }
    obj = Objective(every_loss(), weights)
    batch = texts_only_batch()
    total, parts = obj(batch)
    assert set(parts) == {"distill"}
    psi = obj.losses["distill"].proj
    by_hand = sum(
        1.0
        - torch.dot(psi(batch.document[i]), batch.teacher_document[i])
        / (psi(batch.document[i]).norm() * batch.teacher_document[i].norm())
        for i in range(4)
    )
    assert parts["distill"].item() == pytest.approx(by_hand.item(), rel=1e-10)
    assert total.item() == pytest.approx(2.0 * by_hand.item(), rel=1e-10)
    total.backward()
    assert batch.document.grad.abs().sum() > 0 and psi.weight.grad.abs().sum() > 0
    assert obj.texts_only_losses() == ["distill"]


def test_pair_losses_are_not_even_called_on_texts_only_batches():
    class Boom(torch.nn.Module):
        def forward(self, batch):
            raise AssertionError("a pair loss ran on a texts-only batch")

    obj = Objective(
        {"boom": Boom(), "distill": EmbeddingDistillation(5, 6).double()}, {"boom": 1.0, "distill": 1.0}
    )
    total, parts = obj(texts_only_batch())
    assert set(parts) == {"distill"} and total.requires_grad
    with pytest.raises(AssertionError, match="pair loss ran"):
        obj(leaf_batch())  # the same losses on a pair batch: Boom runs


def test_wrapped_losses_keep_their_needs_pairs():
    obj = Objective(
        {
            "nce": Matryoshka(InfoNCE(temperature=0.1), [2, 5]),
            "distill": Matryoshka(EmbeddingDistillation(5, 6).double(), [2, 5]),
        },
        {"nce": 1.0, "distill": 1.0},
    )
    batch = texts_only_batch()
    _, parts = obj(batch)
    assert set(parts) == {"distill"}
    inner = obj.losses["distill"].inner
    expected = inner(batch.map_student(lambda z: torch.nn.functional.normalize(z[..., :2], dim=-1))) + inner(
        batch
    )
    assert parts["distill"].item() == pytest.approx(expected.item(), rel=1e-10)


def test_texts_only_losses_names_what_trains_on_single_texts():
    assert Objective(losses(), {"infonce": 1.0, "distill": 0.0, "gor": 0.0}).texts_only_losses() == []
    assert Objective(losses(), {"infonce": 1.0, "distill": 2.0, "gor": 1.0}).texts_only_losses() == [
        "distill"
    ]


def test_texts_only_batch_without_teacher_vectors_names_only_the_document_side():
    mixed = {"infonce": InfoNCE(temperature=0.1), "distill": EmbeddingDistillation(5, 6).double()}
    strict = Objective(mixed, {"infonce": 1.0, "distill": 1.0})
    with pytest.raises(ValueError, match=r"'distill' needs batch fields \['teacher_document'\]"):
        strict(texts_only_batch(with_teacher=False))
    skipping = Objective(mixed, {"infonce": 1.0, "distill": 1.0}, skip_missing=True)
    total, parts = skipping(texts_only_batch(with_teacher=False))
    assert parts == {} and not total.requires_grad


def test_a_texts_only_batch_carries_no_pair_field():
    d = rand(4, 5, seed=1)
    with pytest.raises(ValueError, match=r"texts-only batch .*\['teacher_query'\]"):
        EmbeddingBatch(query=None, document=d, teacher_query=rand(4, 6, seed=2))
    batch = EmbeddingBatch(query=None, document=d)
    assert batch.texts_only and batch.batch_size == 4 and batch.dim == 5
    assert batch.applicable(("teacher_query", "teacher_document")) == ("teacher_document",)
    assert not leaf_batch().texts_only
