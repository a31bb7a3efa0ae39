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


# ------------------------------------------------------------------------------ weights, batch sizes, lengths


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            [
                "data.datasets.bbc.batch_size=0"
            ],  # was: ZeroDivisionError in the sampler, after the models loaded
            "data.datasets.bbc.batch_size=0: must be a positive integer (rows per step of this dataset)",
        ),
        (
            ["~data.datasets.lee_background", "+data.datasets.bbc.weight=0"],  # was: ZeroDivisionError
            "data.datasets: every dataset's weight is 0 (bbc), so no step can draw one",
        ),
        (
            ["+data.datasets.bbc.weight=-1"],  # was: numpy's "Probabilities are not non-negative"
            "data.datasets.bbc.weight=-1: must be a finite number >= 0",
        ),
        (
            ["data.datasets.bbc.query_max_length=0"],
            "data.datasets.bbc.query_max_length=0: must be a positive",
        ),
        (["data.datasets.lee_background.max_rows=0"], "data.datasets.lee_background.max_rows=0: must be"),
        (["++data.batch_size_cap=0"], "data.batch_size_cap=0: must be a positive integer"),
        (["student.max_length=0"], "student.max_length=0: must be a positive integer (tokens per text)"),
        (["teacher.max_length=-1"], "teacher.max_length=-1: must be a positive integer (tokens per text)"),
        (
            ["teacher.batch_size=0"],
            "teacher.batch_size=0: must be a positive integer (texts per forward pass)",
        ),
    ],
)
def test_a_bad_weight_batch_size_or_length_is_named_before_any_model_is_loaded(
    tmp_path, no_model_loading, overrides, message
):
    """Issue 23, item 6: these ended in a ZeroDivisionError, numpy's "Probabilities are not non-negative"
    after the models had loaded, an index error in the backbone, or nothing at all (query_max_length=0).
    Each is now refused with its key, before the student loads."""
    with pytest.raises(ValueError, match=re.escape(message)):
        build(run_cfg(tmp_path, *overrides))


def test_the_pre_compute_checks_the_mix_before_the_teacher_loads(tmp_path):
    """``python -m jina5.teacher`` built the teacher first: a bad data value failed after it had loaded.
    Here the teacher cannot load at all (a source that does not exist): the data value is named first
    (in Hydra's error for the data module's construction)."""
    from hydra.errors import InstantiationException

    from jina5.teacher.precompute import precompute_from_config

    cfg = run_cfg(tmp_path, "data.datasets.bbc.batch_size=0", f"teacher.source={tmp_path / 'no' / 'teacher'}")
    with pytest.raises(InstantiationException, match=re.escape("data.datasets.bbc.batch_size=0: must be")):
        precompute_from_config(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.batch_size=0", "eval.batch_size=0: must be a positive integer (texts per encode batch)"),
        ("max_length=0", "max_length=0: must be a positive integer"),  # was: ignored (0 is falsy)
    ],
)
def test_a_bad_evaluation_batch_size_or_length_is_named_before_the_model_loads(
    monkeypatch, override, message
):
    from helpers import compose

    import jina5.eval.models
    from jina5.evaluate import evaluate

    def no_encoder(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(jina5.eval.models, "Encoder", no_encoder)
    cfg = compose(["model=teacher", "eval=smoke", override], "eval")
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluate(cfg)


# ------------------------------------------------------------------------------ dataset names


def test_hydras_suggestion_for_a_mistyped_dataset_is_refused_naming_the_mix(
    tmp_path, no_model_loading, monkeypatch
):
    """Issue 23, item 7: ``data.datasets.lee_backgrond=null`` fails in Hydra with "To append to your config
    use +data.datasets.lee_backgrond=null"; that override added a null entry and silently kept
    lee_background in the mix. It is now refused with the mix's names; the way out it names (the name,
    without the '+') gets past the config checks."""
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setattr(HydraConfig.instance(), "cfg", HydraConfig.instance().cfg)  # run_cfg sets it
    with pytest.raises(ValueError) as err:
        build(run_cfg(tmp_path, "+data.datasets.lee_backgrond=null"))
    assert str(err.value) == (
        "+data.datasets.lee_backgrond=null: no dataset 'lee_backgrond' in the mix, so this drops nothing "
        "(a '+' adds a key the config does not have); the mix's datasets: bbc, lee_background. Drop one "
        "with data.datasets.<name>=null, without the '+'"
    )
    with pytest.raises(AssertionError, match="the student was loaded"):  # past every check of the config
        build(run_cfg(tmp_path, "data.datasets.lee_background=null"))
