"""RoPE theta at construction (``jina5.model.rope``): ``student.rope_theta`` for training, ``export.rope_theta`` /
``export.max_seq_length`` for inference, and the round trip of a trained run's export."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from helpers import run_cfg

from jina5.export import main as export_main
from jina5.model.encoder import Encoder
from jina5.model.rope import rope_theta
from jina5.runs.lifecycle import export_settings
from jina5.train import train

HEAD_DIM = 8  # tiny models: hidden 32 / 4 heads
TEXTS = [
    "a long text about rotary position embeddings, with enough characters that late positions matter " * 3,
    "short one",
    "query: what is the base of the rotation?",
]


def inv_freqs(encoder: Encoder) -> list[torch.Tensor]:
    """Every rotary ``inv_freq`` buffer of the backbone."""
    return [m.inv_freq for m in encoder.backbone.modules() if hasattr(m, "inv_freq")]


def expected_inv_freq(theta: float, dim: int = HEAD_DIM) -> torch.Tensor:
    """w_i = 1 / theta^(2i/d), i = 0 .. d/2 - 1, written out term by term."""
    return torch.tensor([1.0 / theta ** (2 * i / dim) for i in range(dim // 2)], dtype=torch.float32)


def tiny(model_type: str, **kwargs) -> Encoder:
    return Encoder(f"tiny:{model_type}", pooling="last_token", append_eos=True, max_length=200, **kwargs)


@pytest.mark.parametrize("model_type", ["qwen3", "eurobert"])
def test_the_rotary_buffers_are_built_with_the_configured_theta(model_type):
    default = tiny(model_type)
    assert rope_theta(default.backbone.config) == 10000.0  # the config's own, when none is set
    for theta in (5e5, 3.5e6):
        enc = tiny(model_type, rope_theta=theta)
        buffers = inv_freqs(enc)
        assert buffers and rope_theta(enc.backbone.config) == theta
        for buffer in buffers:
            torch.testing.assert_close(buffer, expected_inv_freq(theta), rtol=1e-6, atol=0)
        # same weights, other rotation: other vectors (the theta reaches the forward pass)
        assert torch.equal(enc.backbone.embed_tokens.weight, default.backbone.embed_tokens.weight)
        assert not torch.allclose(
            torch.tensor(enc.encode(TEXTS)), torch.tensor(default.encode(TEXTS)), atol=1e-4
        )


@pytest.mark.parametrize("model_type", ["bert", "mpnet"])
def test_a_backbone_without_rope_refuses_a_theta_naming_the_key(model_type, tmp_path):
    with pytest.raises(ValueError, match=r"student\.rope_theta.*no rotary position embeddings"):
        Encoder(f"tiny:{model_type}", rope_theta=1e6)
    with pytest.raises(ValueError, match=r"export\.rope_theta.*no rotary position embeddings"):
        Encoder(f"tiny:{model_type}").save_pretrained(tmp_path / "out", rope_theta=1e6)
    assert not (tmp_path / "out").exists()


def test_export_rope_theta_on_a_student_without_rope_fails_before_training(tmp_path):
    cfg = run_cfg(tmp_path, "export.rope_theta=1e6", "trainer.max_steps=2")  # tiny:bert student
    with pytest.raises(ValueError, match=r"export\.rope_theta is set, but the bert backbone"):
        train(cfg)
    assert not (tmp_path / "runs" / cfg.run_name / "checkpoints").exists()


def test_export_settings_take_a_bool_or_a_mapping():
    assert export_settings(True) == {"rope_theta": None, "max_seq_length": None}
    assert export_settings(False) is None and export_settings(None) is None  # export=false
    assert export_settings({"enabled": False, "rope_theta": 1e6}) is None
    on = {"enabled": True, "rope_theta": 3.5e6, "max_seq_length": 4096}
    assert export_settings(on) == {"rope_theta": 3.5e6, "max_seq_length": 4096}
    with pytest.raises(ValueError, match=r"export: unknown keys \['rope'\]"):
        export_settings({"rope": 1})


class KeepStudent(L.Callback):
    """The student's rotary buffers while it trains, and its weights after training."""

    def on_train_start(self, trainer, module) -> None:
        self.training_inv_freq = [b.clone() for b in inv_freqs(module.encoder)]

    def on_train_end(self, trainer, module) -> None:
        self.state = {k: v.clone() for k, v in module.encoder.backbone.state_dict().items()}


@pytest.mark.parametrize("model_type", ["qwen3", "eurobert"])
def test_train_with_one_theta_export_with_another_and_reload_the_same_vectors(model_type, tmp_path):
    """student.rope_theta = 5e5 in training; export.rope_theta = 3.5e6 and max_seq_length 40 in encoder/:
    config.json, jina5_encoder.json and sentence-transformers' config say so, and Encoder.from_pretrained
    and SentenceTransformer both give the vectors of an in-memory model with the trained weights built
    at 3.5e6 (and not those of the training theta)."""
    from sentence_transformers import SentenceTransformer

    cfg = run_cfg(
        tmp_path,
        "student.rope_theta=5e5",
        "export.rope_theta=3.5e6",
        "export.max_seq_length=40",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        student=model_type,
    )
    kept = KeepStudent()
    train(cfg, callbacks=[kept])
    for buffer in kept.training_inv_freq:
        torch.testing.assert_close(buffer, expected_inv_freq(5e5), rtol=1e-6, atol=0)

    out = tmp_path / "runs" / cfg.run_name / "encoder"
    saved = json.loads((out / "config.json").read_text())
    assert saved["rope_parameters"]["rope_theta"] == 3.5e6
    assert json.loads((out / "jina5_encoder.json").read_text())["max_length"] == 40
    assert json.loads((out / "sentence_bert_config.json").read_text())["max_seq_length"] == 40

    reloaded = Encoder.from_pretrained(out)
    assert reloaded.max_length == 40
    for buffer in inv_freqs(reloaded):
        torch.testing.assert_close(buffer, expected_inv_freq(3.5e6), rtol=1e-6, atol=0)

    settings = dict(pooling="last_token", append_eos=True, prompts=dict(cfg.student.prompts), max_length=40)
    reference = Encoder(
        f"tiny:{model_type}", rope_theta=3.5e6, padding_side=cfg.student.padding_side, **settings
    )
    reference.backbone.load_state_dict(kept.state)
    at_training_theta = Encoder(f"tiny:{model_type}", rope_theta=5e5, **settings)
    at_training_theta.backbone.load_state_dict(kept.state)

    expected = reference.encode(TEXTS, prompt="document")
    torch.testing.assert_close(reloaded.encode(TEXTS, prompt="document"), expected, rtol=0, atol=1e-6)
    assert abs(at_training_theta.encode(TEXTS, prompt="document") - expected).max() > 1e-4  # 100 x the match
    st = SentenceTransformer(str(out), device="cpu")
    assert st.max_seq_length == 40
    vectors = st.encode(TEXTS, prompt_name="document", convert_to_numpy=True)
    torch.testing.assert_close(vectors, expected, rtol=0, atol=1e-5)

    # python -m jina5.export writes another inference theta from the same run
    export_main([f"run={out.parent}", f"out={tmp_path / 'served'}", "rope_theta=2e6", "max_seq_length=30"])
    served = Encoder.from_pretrained(tmp_path / "served")
    assert (rope_theta(served.backbone.config), served.max_length) == (2e6, 30)
    for buffer in inv_freqs(served):
        torch.testing.assert_close(buffer, expected_inv_freq(2e6), rtol=1e-6, atol=0)
