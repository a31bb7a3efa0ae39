"""Settings that cannot train fail before the expensive part: before any model is loaded
(objective and scheduler keys: a check of the config alone) or as soon as the tables are loaded (a
dataset with fewer rows than batch_size x world_size), never after minutes of teacher caching.

The stand-ins fail the test if the run gets that far: ``NoTeacher`` (any use of the teacher), a
``build_student`` that raises (a model is loaded), a ``teacher_caches`` that raises (the teacher cache
is about to be filled)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from helpers import run_cfg

import jina5.train
from jina5.data.datamodule import PairDataModule
from jina5.train import build, train


class NoTeacher:
    """A teacher that fails the test if the data module asks anything of it."""

    def __getattr__(self, name: str):
        raise AssertionError(f"teacher.{name} used before the data sizes were checked")


@pytest.fixture
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def build_student(cfg):
        raise AssertionError("the student was loaded before the config was checked")

    monkeypatch.setattr(jina5.train, "build_student", build_student)


@pytest.fixture
def no_teacher_caching(monkeypatch: pytest.MonkeyPatch) -> None:
    def teacher_caches(self, read_only=False):
        raise AssertionError("the teacher cache was about to be filled before the data sizes were checked")

    monkeypatch.setattr(PairDataModule, "teacher_caches", teacher_caches)


# ------------------------------------------------------------------------------ data sizes vs batch x world


def test_a_batch_larger_than_its_dataset_is_named_before_the_teacher_is_touched():
    dm = PairDataModule(
        {"bbc": {"max_rows": 8, "batch_size": 16}, "news": {"max_rows": 8, "batch_size": 4}},
        encoder=None,
        teacher=NoTeacher(),
    )
    with pytest.raises(ValueError, match=r"at least batch_size x world_size rows: bbc \(8 rows < 16 x 1\);"):
        dm.setup("fit")


def test_the_world_size_counts_before_the_teacher_is_touched():
    """24 rows feed one rank a batch of 16, not two ranks (a step takes 16 distinct rows per rank)."""
    dm = PairDataModule({"bbc": {"max_rows": 24, "batch_size": 16}}, encoder=None, teacher=NoTeacher())
    dm.trainer = SimpleNamespace(world_size=2, global_rank=0)
    with pytest.raises(ValueError, match=re.escape("bbc (24 rows < 16 x 2)")):
        dm.setup("fit")


def test_training_with_a_batch_larger_than_the_data_fails_before_teacher_caching(
    tmp_path, no_teacher_caching
):
    cfg = run_cfg(tmp_path, "data.datasets.bbc.batch_size=128", "trainer.max_steps=1")  # bbc: 64 rows
    with pytest.raises(ValueError, match=re.escape("bbc (64 rows < 128 x 1)")):
        train(cfg)


# ------------------------------------------------------------------------------ scheduler keys


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("scheduler.kind=cosin", "scheduler.kind must be one of constant | linear | cosine, got 'cosin'"),
        ("+scheduler.warmup_step=5", "unknown scheduler config keys ['warmup_step']; the keys are ['kind',"),
        ("scheduler.min_lr_ratio=2", "scheduler.min_lr_ratio must be a number in [0, 1], got 2"),
        ("scheduler.warmup_steps=-1", "scheduler.warmup_steps must be an integer >= 0, got -1"),
        (
            "scheduler.total_steps=0",
            "scheduler.total_steps must be null (trainer.max_steps) or an integer >= 1",
        ),
    ],
)
def test_a_bad_scheduler_setting_fails_before_any_model_is_loaded(
    tmp_path, no_model_loading, override, message
):
    cfg = run_cfg(tmp_path, override)
    with pytest.raises(ValueError, match=re.escape(message)):
        build(cfg)


# ------------------------------------------------------------------------------ objective keys


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+objective.weights.infonc=1.0",
            "objective.weights names ['infonc'], which objective.losses does not",
        ),
        ("objective.binary_aware=[infonc]", "objective.binary_aware names 'infonc', which is not in"),
        ("+objective.matryoshka.dim=[8,16]", "unknown objective.matryoshka config keys ['dim']"),
        ("+objective.skip_if_present={nce: [scores]}", "objective.skip_if_present names 'nce', which is not"),
        ("+objective.temprature=0.1", "unknown objective config keys ['temprature']"),
    ],
)
def test_a_bad_objective_key_fails_before_any_model_is_loaded(tmp_path, no_model_loading, override, message):
    cfg = run_cfg(tmp_path, override)
    with pytest.raises(KeyError, match=re.escape(message)):
        build(cfg)


def test_matryoshka_dims_beyond_the_student_fail_before_teacher_caching(tmp_path, no_teacher_caching):
    """The toy student is 32-d: a 64-d Matryoshka term would fail only at the first step."""
    cfg = run_cfg(tmp_path, "objective.matryoshka.enabled=true", "objective.matryoshka.dims=[8,16,64]")
    with pytest.raises(
        ValueError, match=re.escape("objective.matryoshka.dims [64] exceed the student's embedding dim 32")
    ):
        train(cfg)
