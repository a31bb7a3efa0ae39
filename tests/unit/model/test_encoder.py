"""Encoder core: pooling under both padding sides, pruning, prompts, encode options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from jina5.model.encoder import Encoder
from jina5.model.pooling import pool
from jina5.model.tiny import FAIRSEQ_SPECIALS, SPECIALS, char_tokenizer, tiny_model_and_tokenizer

TEXTS = ["a b", "hello there my friend", "x", "the quick brown fox jumps"]


def tiny_encoder(model_type="bert", **kw) -> Encoder:
    model, tok = tiny_model_and_tokenizer(model_type)
    return Encoder(model, tokenizer=tok, **kw)


def test_pool_hand_computed():
    hidden = torch.arange(2 * 4 * 2, dtype=torch.float32).reshape(2, 4, 2)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert torch.equal(pool(hidden, right, "mean")[0], (hidden[0, 0] + hidden[0, 1]) / 2)
    assert torch.equal(pool(hidden, right, "cls")[0], hidden[0, 0])
    assert torch.equal(pool(hidden, left, "cls")[0], hidden[0, 2])
    assert torch.equal(pool(hidden, right, "last_token")[0], hidden[0, 1])
    assert torch.equal(pool(hidden, left, "last_token")[0], hidden[0, 3])
    assert torch.equal(pool(hidden, left, "last_token")[1], hidden[1, 3])


@pytest.mark.parametrize(
    "model_type,pooling,eos",
    [
        ("bert", "mean", False),
        ("bert", "cls", False),
        ("mpnet", "mean", False),
        ("qwen3", "last_token", True),
        ("eurobert", "mean", False),
        ("eurobert", "last_token", False),
    ],
)
def test_left_and_right_padding_give_identical_vectors(model_type, pooling, eos):
    right = tiny_encoder(model_type, pooling=pooling, append_eos=eos, padding_side="right")
    left = tiny_encoder(model_type, pooling=pooling, append_eos=eos, padding_side="left")
    a, b = right.encode(TEXTS, batch_size=4), left.encode(TEXTS, batch_size=4)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # and batching (different padding widths) does not change a text's vector
    np.testing.assert_allclose(a, right.encode(TEXTS, batch_size=1), atol=1e-5)


@pytest.mark.parametrize(
    "model_type,specials",
    [
        ("bert", SPECIALS),
        ("roberta", FAIRSEQ_SPECIALS),
        ("xlm-roberta", FAIRSEQ_SPECIALS),
        ("camembert", FAIRSEQ_SPECIALS),
        ("data2vec-text", FAIRSEQ_SPECIALS),
        ("xlm-roberta-xl", FAIRSEQ_SPECIALS),
        ("roberta-prelayernorm", FAIRSEQ_SPECIALS),
        ("mpnet", SPECIALS),  # pad id 0, but MPNet's position table reserves rows 0..1 all the same
    ],
)
def test_position_ids_are_the_backbones_own(model_type, specials):
    """The encoder passes position ids (padding-side invariance); on a right-padded batch they must be
    the ones the backbone numbers itself (transformers' defaults: 0, 1, ... for BERT, padding_idx + 1,
    ... for a learned table that reserves 0..padding_idx)."""
    tok = char_tokenizer(specials=specials)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    enc = Encoder(AutoModel.from_config(config, attn_implementation="eager"), tokenizer=tok).eval()
    batch = enc.tokenize(TEXTS)
    with torch.no_grad():
        own = enc.backbone(**batch).last_hidden_state  # no position_ids: the model numbers them itself
        expected = torch.nn.functional.normalize(pool(own, batch["attention_mask"], "mean"), dim=-1)
        assert torch.allclose(enc(**batch), expected, atol=1e-6)


def test_layer_pruning_keeps_the_chosen_layers_weights():
    full, tok = tiny_model_and_tokenizer("bert", layers=6)
    originals = {i: {k: v.clone() for k, v in full.encoder.layer[i].state_dict().items()} for i in range(6)}
    enc = Encoder(full, tokenizer=tok, keep_layers=[0, 2, 4])
    assert len(enc.backbone.encoder.layer) == 3 and enc.backbone.config.num_hidden_layers == 3
    for new, old in enumerate([0, 2, 4]):
        for k, v in enc.backbone.encoder.layer[new].state_dict().items():
            assert torch.equal(v, originals[old][k]), (new, k)


def test_pruning_a_decoder_renumbers_layers_and_config():
    model, tok = tiny_model_and_tokenizer("qwen3", layers=4)
    enc = Encoder(model, tokenizer=tok, pooling="last_token", append_eos=True, keep_layers=[1, 3])
    assert [layer.self_attn.layer_idx for layer in enc.backbone.layers] == [0, 1]
    assert len(enc.backbone.config.layer_types) == 2
    assert enc.encode(TEXTS).shape == (4, 32)


@pytest.mark.parametrize("keep", [[0, 9], [1, 1], []])
def test_bad_keep_layers_raise(keep):
    model, tok = tiny_model_and_tokenizer("bert", layers=4)
    with pytest.raises(ValueError, match="keep_layers"):
        Encoder(model, tokenizer=tok, keep_layers=keep)


def test_prompts_change_input_and_unknown_prompt_raises():
    enc = tiny_encoder(prompts={"query": "query: ", "document": "document: "})
    q, d = enc.encode(TEXTS, prompt="query"), enc.encode(TEXTS, prompt="document")
    assert not np.allclose(q, d)
    np.testing.assert_allclose(q, enc.encode(["query: " + t for t in TEXTS]), atol=1e-6)
    with pytest.raises(KeyError, match="unknown prompt"):
        enc.encode(TEXTS, prompt="passage")


def test_encode_dims_precisions_and_order():
    enc = tiny_encoder()
    full = enc.encode(TEXTS)
    assert full.dtype == np.float32 and np.allclose(np.linalg.norm(full, axis=1), 1, atol=1e-5)
    # rows come back in input order despite the length sort
    for i, t in enumerate(TEXTS):
        np.testing.assert_allclose(full[i], enc.encode(t), atol=1e-6)
    cut = enc.encode(TEXTS, dim=8)
    ref = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, ref, atol=1e-6)
    np.testing.assert_array_equal(enc.encode(TEXTS, precision="ubinary"), np.packbits(full > 0, axis=1))
    assert enc.encode(TEXTS, precision="binary").dtype == np.int8
    assert enc.encode(TEXTS, precision="int8").shape == (4, 32)
    with pytest.raises(ValueError, match="dim"):
        enc.encode(TEXTS, dim=64)


def test_a_bf16_encode_casts_each_weight_once_with_the_numbers_of_a_cast_per_batch():
    """Under bf16 autocast each weight is cast to bf16 once per encode call, not once per batch, and the
    vectors are those of casting it in every batch (the same bf16 values)."""
    enc = tiny_encoder()
    enc.compute_precision = "bf16"
    texts = [f"text number {i}" for i in range(6)]  # one length: 3 batches of 2
    weight = tuple(enc.backbone.encoder.layer[0].intermediate.dense.weight.shape)  # (64, 32): no activation's
    with torch.profiler.profile(record_shapes=True) as prof:
        vectors = enc.encode(texts, batch_size=2)
    casts = sum(
        e.count
        for e in prof.key_averages(group_by_input_shape=True)
        if e.key == "aten::copy_" and e.input_shapes and tuple(e.input_shapes[0]) == weight
    )
    assert casts == len(enc.backbone.encoder.layer)  # the intermediate weight of each layer, once
    batch, per_batch = enc.tokenize(texts), []
    enc.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):  # casts in every batch
        for rows in (slice(0, 2), slice(2, 4), slice(4, 6)):
            per_batch.append(enc(batch["input_ids"][rows], batch["attention_mask"][rows]).numpy())
    np.testing.assert_array_equal(vectors, np.concatenate(per_batch))


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_encode_rejects_bad_text_naming_it(bad):
    enc = tiny_encoder()
    with pytest.raises(ValueError, match="text 1"):
        enc.encode(["fine", bad])


def test_forward_is_differentiable():
    enc = tiny_encoder()
    batch = enc.tokenize(TEXTS)
    enc(**batch).sum().backward()
    assert enc.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0


@pytest.mark.gpu
def test_a_cuda_bf16_encode_agrees_with_the_cpu_fp32_one():
    """The same tiny decoder (last-token pooling, sdpa) on CUDA under bf16 autocast and on the CPU in
    fp32: every text's vector within bf16 rounding (cosine > 0.99)."""
    texts = ["a short one", "a somewhat longer text about cats and dogs", "x", "the third " * 6]
    vectors = {}
    for device, precision in (("cpu", "fp32"), ("cuda", "bf16")):
        model, tok = tiny_model_and_tokenizer("qwen3", seed=0)
        enc = Encoder(model, tokenizer=tok, pooling="last_token", append_eos=True)
        enc.compute_precision = precision
        vectors[device] = enc.to(device).encode(texts, batch_size=4)
    cos = (vectors["cpu"] * vectors["cuda"]).sum(-1)
    assert cos.min() > 0.99, cos
