"""The compute-precision policy (jina5.model.precision): detection, the path taken by the teacher, the
evaluation and the trainer, and the cache keys that keep bf16 and fp32 apart."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf.errors import InterpolationResolutionError

from jina5.eval.encoding import model_fingerprint
from jina5.model import precision
from jina5.model.encoder import Encoder
from jina5.teacher.cache import Teacher, TeacherCache, TeacherCacheError

TEXTS = [
    f"{w} number {i}: a sentence long enough to run a few matmuls, about {w} and more"
    for i, w in enumerate(["cats", "stock markets", "rain tomorrow", "tea", "the election"] * 4)
]
# content_fingerprint(Encoder("tiny:bert"), skip_settings=("source", "prompts")) as pinned in
# tests/unit/model/test_io.py: the key of every fp32 teacher cache (fp32 adds nothing to the key)
PINNED_TINY_BERT_TEACHER = "79b1be33430c9d3642b1564c22530dec824c000db258a308ede43dd36aba716d"
PINNED_TINY_BERT_EVAL = "96336c097e9bc965ec7725cdc33c7e2974923ea86f710d9cdf5b4160df30a3af"


@pytest.fixture
def hardware(monkeypatch):
    """``hardware(True | False)``: pretend every device has (or lacks) native bf16; logs every resolution."""
    monkeypatch.setattr(precision, "_logged", set())

    def set_fast(fast: bool) -> None:
        monkeypatch.setattr(precision, "fast_bf16", lambda device_type: (fast, f"simulated {fast}"))

    return set_fast


def linear_dtypes(encoder: Encoder) -> set[torch.dtype]:
    """The set the dtypes of the backbone's Linear outputs are collected in (from now on)."""
    seen: set[torch.dtype] = set()
    for m in encoder.backbone.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda mod, args, out: seen.add(out.dtype))
    return seen


# ---------------------------------------------------------------------------- detection and policy


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile amx_bf16\n\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n")
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert precision.cpu_bf16_flags(str(x86)) == ("amx_bf16", "avx512_bf16")
    assert precision.cpu_bf16_flags(str(arm)) == ("bf16",)
    assert precision.cpu_bf16_flags(str(old)) == ()  # AVX512 without BF16: emulated, slow
    assert precision.cpu_bf16_flags(str(tmp_path / "absent")) == ()  # not Linux: never assumed


def test_auto_follows_the_hardware_and_logs_the_path(hardware, caplog):
    caplog.set_level(logging.INFO, logger="jina5.model.precision")
    hardware(True)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    assert precision.lightning_precision("auto", "cpu") == "bf16-mixed"
    hardware(False)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    assert precision.lightning_precision("auto", "cpu") == "32-true"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"  # forced either way
    assert precision.lightning_precision("fp32", "cpu") == "32-true"
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == [
        "precision=auto on cpu: bf16 (simulated True)",
        "precision=auto on cpu: fp32 (simulated False)",
    ]
    assert len(lines) == 4  # one line per (choice, device, path): the second lightning_precision logs none


def test_a_bad_value_names_the_config_key():
    with pytest.raises(ValueError, match=r"precision='bf17': must be one of auto, bf16, fp32 .*conf/train"):
        precision.resolve_precision("bf17")
    with pytest.raises(ValueError, match="precision='float16'"):
        Teacher(encoder=Encoder("tiny:bert"), precision="float16")


# ---------------------------------------------------------------------------- teacher


def test_bf16_teacher_vectors_are_within_cosine_0999_of_fp32(hardware):
    hardware(True)
    fp32 = Teacher(encoder=Encoder("tiny:mpnet"), precision="fp32")
    bf16 = Teacher(encoder=Encoder("tiny:mpnet"), precision="auto")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    seen = linear_dtypes(bf16.encoder)
    a, b = fp32.embed(TEXTS), bf16.embed(TEXTS)
    assert seen == {torch.bfloat16}  # the matmuls ran in bf16...
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-6)  # ...the output is fp32
    cos = np.sum(a * b, axis=1)
    assert cos.min() > 0.999
    assert np.abs(a - b).max() > 1e-5  # really another path (the check above can fail)


@pytest.mark.parametrize("choice,fast", [("fp32", True), ("auto", False)])
def test_fp32_path_is_the_code_of_before_bit_for_bit(hardware, choice, fast):
    """precision=fp32, or auto without native bf16: no autocast, the vectors of an encoder that was
    never given a precision (the plain code path)."""
    hardware(fast)
    teacher = Teacher(encoder=Encoder("tiny:mpnet"), precision=choice)
    assert teacher.precision == "fp32"
    seen = linear_dtypes(teacher.encoder)
    got = teacher.embed(TEXTS)
    assert seen == {torch.float32}
    before = Encoder("tiny:mpnet")
    np.testing.assert_array_equal(got, before.encode(TEXTS, batch_size=teacher.batch_size))


def test_bf16_and_fp32_teacher_caches_never_mix(tmp_path, monkeypatch, hardware):
    monkeypatch.setenv("JINA5_CACHE", str(tmp_path))
    hardware(True)
    fp32 = Teacher(encoder=Encoder("tiny:bert"), precision="fp32")
    bf16 = Teacher(encoder=Encoder("tiny:bert"), precision="auto")
    assert fp32.fingerprint == PINNED_TINY_BERT_TEACHER  # existing fp32 caches stay valid
    assert bf16.fingerprint != fp32.fingerprint
    a, b = TeacherCache(fp32, progress=False), TeacherCache(bf16, progress=False)
    assert a.path != b.path
    a.get(TEXTS[:4])
    with pytest.raises(TeacherCacheError, match="fingerprint"):  # an fp32 cache handed to a bf16 teacher
        TeacherCache(bf16, path=a.path, progress=False)


@pytest.mark.integration
def test_real_mpnet_teacher_bf16_within_cosine_0999_of_fp32():
    """The bundled teacher at the embedded default's 64 tokens (about 10 s)."""
    from jina5.assets import AssetMissingError, resolve_model

    source = "sentence-transformers/all-mpnet-base-v2"
    try:
        path = resolve_model(f"bundled:{source}")
    except AssetMissingError as err:
        pytest.skip(str(err))
    fp32 = Teacher(path, max_length=64, precision="fp32")
    bf16 = Teacher(encoder=Encoder(path, max_length=64), precision="bf16")
    cos = np.sum(fp32.embed(TEXTS) * bf16.embed(TEXTS), axis=1)
    assert 0.999 < cos.min() < 1.0


# ---------------------------------------------------------------------------- evaluation


def test_evaluation_encodes_under_the_policy_with_its_own_key(hardware):
    from helpers import compose

    from jina5.eval.models import load_model

    assert compose(["model=tiny:bert"], "eval").precision == "fp32"  # the tests pin fp32 (tests/conftest.py)
    hardware(False)
    auto = load_model(compose(["model=tiny:bert", "precision=auto"], "eval")).encoder
    assert auto.compute_precision == "fp32"
    assert model_fingerprint(auto) == PINNED_TINY_BERT_EVAL  # results stored before stay reusable
    hardware(True)
    bf16 = load_model(compose(["model=tiny:bert", "precision=auto"], "eval")).encoder
    assert bf16.compute_precision == "bf16" and model_fingerprint(bf16) != PINNED_TINY_BERT_EVAL
    seen = linear_dtypes(bf16)
    cos = np.sum(bf16.encode(TEXTS) * auto.encode(TEXTS), axis=1)
    assert seen == {torch.bfloat16} and cos.min() > 0.999
    forced = load_model(compose(["model=tiny:bert", "precision=fp32"], "eval")).encoder
    assert forced.compute_precision == "fp32"


# ---------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    "override,fast,want",
    [
        ("precision=auto", True, "bf16-mixed"),
        ("precision=auto", False, "32-true"),
        ("precision=fp32", True, "32-true"),
        ("precision=bf16", False, "bf16-mixed"),
    ],
)
def test_the_trainer_takes_its_precision_from_the_policy(tmp_path, hardware, override, fast, want):
    from helpers import run_cfg

    hardware(fast)
    cfg = run_cfg(tmp_path, override)
    assert cfg.trainer.precision == want
    assert instantiate(cfg.teacher).precision == ("bf16" if want == "bf16-mixed" else "fp32")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.precision == want


def test_a_bad_trainer_precision_names_the_config_key(tmp_path):
    from helpers import run_cfg

    with pytest.raises(InterpolationResolutionError, match="precision='bf17'"):
        run_cfg(tmp_path, "precision=bf17").trainer.precision  # noqa: B018


@pytest.mark.parametrize(
    ("device", "native"), [("Tesla V100-SXM2-32GB", False), ("NVIDIA A100-SXM4-80GB", True)]
)
def test_auto_on_cuda_counts_only_native_bf16_not_emulation(monkeypatch, device, native):
    """A pre-Ampere GPU (V100) emulates bf16: torch.cuda.is_bf16_supported() says True by default
    (including_emulation=True), but its bf16 is slow, so ``auto`` takes fp32 there."""

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: device)
    fast, why = precision.fast_bf16("cuda")
    assert fast is native
    assert why == (f"{device} supports bf16" if native else "no CUDA device with native bf16")
    assert precision.resolve_precision("auto", "cuda") == ("bf16" if native else "fp32")
    assert precision.lightning_precision("auto", "cuda") == ("bf16-mixed" if native else "32-true")
