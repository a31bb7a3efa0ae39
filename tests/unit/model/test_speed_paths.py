"""The training speed paths of the encoder match its plain path: attention implementation,
use_cache=False, gradient checkpointing, torch.compile and packing (``jina5.model.packing``)."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from jina5.model.attention import auto_attention
from jina5.model.encoder import Encoder
from jina5.model.packing import block_diagonal_mask, first_fit_decreasing, pack, unpack
from jina5.model.pooling import pool
from jina5.model.tiny import tiny_model_and_tokenizer

TEXTS = [
    "hello world this is a test",
    "short",
    "a much longer text that goes on and on for a while, with more words in it",
    "mid size text here",
    "x",
    "the last one, of a middling length",
]
SETTINGS = {  # the students' settings (conf/student): decoders left-padded with an EOS
    "qwen3": dict(padding_side="left", append_eos=True),
    "eurobert": dict(padding_side="right", append_eos=True),
    "bert": dict(padding_side="right"),
    "mpnet": dict(padding_side="right"),
    "xlm-roberta": dict(padding_side="right"),
}


def pair(
    model_type: str, pooling: str, dropout: bool = False, attn: str = "eager", **fast
) -> tuple[Encoder, Encoder]:
    """(plain, fast) tiny encoders with the same weights, in training mode; dropout off unless asked."""
    common = dict(pooling=pooling, attn_implementation=attn, **SETTINGS[model_type])
    plain = Encoder(f"tiny:{model_type}", **common)
    other = Encoder(f"tiny:{model_type}", **common, **fast)
    other.load_state_dict(plain.state_dict())
    for enc in (plain, other):
        enc.train()
        if not dropout:
            for m in enc.modules():
                if isinstance(m, nn.Dropout):
                    m.p = 0.0
    return plain, other


def embed_and_grads(enc: Encoder, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Embeddings of TEXTS and the gradients of a fixed random projection of them."""
    enc.zero_grad()
    torch.manual_seed(seed)
    emb = enc(**enc.tokenize(TEXTS))
    weights = torch.randn(emb.shape, generator=torch.Generator().manual_seed(1))
    (emb * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
    return emb.detach(), grads


def assert_match(a: Encoder, b: Encoder, atol: float, dropout_seed: int = 0) -> None:
    """Embeddings within ``atol``; each parameter's gradient within ``atol`` times its largest entry
    (at least 1): a gradient summed over every token of the batch, e.g. BERT's token-type table, is
    ~30 here, where fp32 rounding of a different summation order alone is ~1e-5."""
    ea, ga = embed_and_grads(a, dropout_seed)
    eb, gb = embed_and_grads(b, dropout_seed)
    assert (ea - eb).abs().max() <= atol
    assert ga.keys() == gb.keys() and len(ga) > 0
    for name in ga:
        scale = max(1.0, float(ga[name].abs().max()))
        assert (ga[name] - gb[name]).abs().max() <= atol * scale, name


# ---------------------------------------------------------------- packing
def test_first_fit_decreasing_by_hand():
    # longest first: 5 -> row 0; 4 -> row 1 (5 + 4 > 6); 2 -> row 1 (4 + 2 = 6); 1 -> row 0
    assert first_fit_decreasing([2, 5, 1, 4], 6) == ([1, 0, 0, 1], [4, 0, 5, 0], [6, 6])


def test_pack_layout_by_hand():
    ids = torch.tensor([[0, 0, 7, 8], [5, 6, 3, 4], [0, 0, 0, 9]])  # left padded, pad id 0
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    p = pack(ids, mask, pad_id=0, position_offset=2)  # rows: [seq 1], [seq 0, seq 2, a pad]
    assert p.input_ids.tolist() == [[5, 6, 3, 4], [7, 8, 9, 0]]
    assert p.position_ids.tolist() == [[2, 3, 4, 5], [2, 3, 2, 2]]  # the tail of pads restarts too
    assert p.segments.tolist() == [[1, 1, 1, 1], [0, 0, 2, -1]]
    hidden = torch.arange(8.0).view(2, 4, 1)
    assert unpack(hidden, p)[..., 0].tolist() == [[0, 0, 4, 5], [0, 1, 2, 3], [0, 0, 0, 6]]
    m = block_diagonal_mask(p.segments)
    assert m.shape == (2, 1, 4, 4)
    assert m[1, 0].int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    additive = block_diagonal_mask(p.segments, torch.float32)
    assert additive[1, 0, 0, 1] == 0 and additive[1, 0, 0, 2] == torch.finfo(torch.float32).min


def test_pack_declines_when_no_two_sequences_share_a_row():
    assert pack(torch.ones(2, 3, dtype=torch.long), torch.tensor([[1, 1, 1], [1, 1, 0]]), pad_id=0) is None


def test_pack_rejects_an_empty_row():
    with pytest.raises(ValueError, match="row 1"):
        pack(torch.ones(2, 3, dtype=torch.long), torch.tensor([[1, 1, 0], [0, 0, 0]]), pad_id=0)


@pytest.mark.parametrize(
    "model_type, pooling",
    [
        ("qwen3", "last_token"),
        ("qwen3", "mean"),
        ("eurobert", "last_token"),
        ("eurobert", "mean"),
        ("eurobert", "cls"),
        ("bert", "mean"),
        ("bert", "cls"),
        ("bert", "last_token"),
        ("mpnet", "mean"),
        ("xlm-roberta", "mean"),  # learned positions from padding_idx + 1 = 2
        ("xlm-roberta", "cls"),
    ],
)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packing_matches_padded_path(model_type, pooling, attn):
    if model_type == "mpnet" and attn == "sdpa":
        pytest.skip("transformers has no SDPA for MPNet")
    plain, packed = pair(model_type, pooling, attn=attn, packing=True)
    batch = plain.tokenize(TEXTS)
    assert pack(**batch, pad_id=plain.tokenizer.pad_token_id).input_ids.shape[0] < len(TEXTS)  # it packs
    assert_match(plain, packed, atol=1e-5)


def test_packing_leaves_eval_mode_padded():
    plain, packed = pair("eurobert", "mean", packing=True)
    plain.eval(), packed.eval()
    batch = plain.tokenize(TEXTS)
    assert torch.equal(plain(**batch), packed(**batch))


@pytest.mark.parametrize("model_type", ["bert", "xlm-roberta"])
def test_packing_an_encoder_needs_a_mask_flash_attention_lacks(model_type):
    plain = Encoder(f"tiny:{model_type}")
    plain.backbone.config._attn_implementation = "flash_attention_2"  # no flash-attn package on CPU
    with pytest.raises(ValueError, match="student.packing=true.*flash_attention_2"):
        Encoder(plain.backbone, tokenizer=plain.tokenizer, packing=True)


@pytest.mark.parametrize("attn", ["flash_attention_2", "flash_attention_3", "kernels-community/flash-attn"])
def test_packing_refuses_flash_attention_before_loading(attn, monkeypatch):
    """Packed rows hold several sequences; transformers' flash path reads them from position_ids only
    for a batch of one row (``_is_packed_sequence``): refused before any backbone is built."""
    import jina5.model.tiny as tiny

    monkeypatch.setattr(tiny, "tiny_model_and_tokenizer", lambda *a, **k: pytest.fail("backbone built"))
    with pytest.raises(ValueError) as err:
        Encoder("tiny:qwen3", attn_implementation=attn, packing=True)
    message = str(err.value)
    for words in ("student.packing=true", f"student.attn_implementation={attn}", "one row", "sdpa"):
        assert words in message


def test_packing_refuses_a_decoder_built_with_flash_attention():
    plain = Encoder("tiny:qwen3", **SETTINGS["qwen3"])
    plain.backbone.config._attn_implementation = "flash_attention_2"  # no flash-attn package on CPU
    with pytest.raises(ValueError, match="student.packing=true.*flash_attention_2"):
        Encoder(plain.backbone, tokenizer=plain.tokenizer, packing=True)


# ---------------------------------------------------------------- the other paths
def test_unknown_attn_implementation_names_the_key():
    with pytest.raises(ValueError, match="student.attn_implementation"):
        Encoder("tiny:bert", attn_implementation="flash")


@pytest.mark.parametrize("model_type", ["qwen3", "eurobert", "bert"])
def test_sdpa_matches_eager(model_type):
    eager, sdpa = pair(model_type, "mean")
    sdpa = Encoder(f"tiny:{model_type}", attn_implementation="sdpa", **SETTINGS[model_type])
    sdpa.load_state_dict(eager.state_dict())
    sdpa.train()
    for m in sdpa.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    assert sdpa.backbone.config._attn_implementation == "sdpa"
    assert eager.backbone.config._attn_implementation == "eager"
    assert_match(eager, sdpa, atol=1e-5)


@pytest.mark.parametrize("model_type", ["qwen3", "bert"])
def test_forward_skips_the_kv_cache_bit_for_bit(model_type):
    """use_cache=False: the embeddings are bit-identical to the backbone called plainly (positions
    and mask, cache at its default), and the decoder's forward builds no cache."""
    enc = Encoder(f"tiny:{model_type}", **SETTINGS[model_type])
    batch = enc.tokenize(TEXTS)
    seen = {}
    forward = enc.backbone.forward

    def spy(**kwargs):
        seen.update(kwargs)
        return forward(**kwargs)

    enc.backbone.forward = spy
    emb = enc(**batch)
    assert seen["use_cache"] is False
    out = forward(**batch, position_ids=enc.position_ids(batch["attention_mask"]))
    reference = nn.functional.normalize(pool(out.last_hidden_state, batch["attention_mask"], "mean"), dim=-1)
    assert torch.equal(emb, reference)
    if model_type == "qwen3":
        assert out.past_key_values is not None  # what use_cache=False avoids
        assert forward(**batch, use_cache=False).past_key_values is None


@pytest.mark.parametrize("model_type", ["bert", "qwen3"])
def test_gradient_checkpointing_matches_with_dropout(model_type):
    plain, ckpt = pair(model_type, "mean", dropout=True, gradient_checkpointing=True)
    assert ckpt.backbone.is_activation_checkpointing
    assert_match(plain, ckpt, atol=1e-6)


@pytest.fixture
def aot_eager(monkeypatch):
    """torch.compile with the aot_eager backend (dynamo's graph capture + AOT autograd, no inductor
    code generation: inductor takes minutes on this CPU; test_compile_inductor is the slow check)."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("model_type", ["bert", "qwen3"])
def test_compile_matches_eager(aot_eager, model_type):
    plain, compiled = pair(model_type, "mean", compile=True)
    assert compiled.backbone._compiled_call_impl is not None
    assert compiled.state_dict().keys() == plain.state_dict().keys()  # checkpoints unchanged
    assert_match(plain, compiled, atol=1e-5)


@pytest.mark.slow
def test_compile_inductor_matches_eager():
    torch._dynamo.reset()
    plain, compiled = pair("bert", "mean", compile=True, compile_mode="default")
    assert_match(plain, compiled, atol=1e-5)


# ---------------------------------------------------------------- auto attention (jina5.model.attention)
def sdpa_built(attention_dropout: float = 0.1, **kwargs) -> Encoder:
    """A tiny BERT built with SDPA (the bundled MiniLM's default), with ``attention_dropout``."""
    model, tokenizer = tiny_model_and_tokenizer("bert", attn_implementation="sdpa")
    model.config.attention_probs_dropout_prob = attention_dropout
    return Encoder(model, tokenizer=tokenizer, **kwargs)


def test_auto_attention_is_eager_while_training_on_cpu_with_attention_dropout():
    enc = sdpa_built()
    assert enc.train().backbone.config._attn_implementation == "eager"
    assert enc.eval().backbone.config._attn_implementation == "sdpa"  # no dropout: SDPA's fused kernel
    enc.encode(["a text"])  # eval and back to the mode it was in
    assert enc.backbone.config._attn_implementation == "sdpa"
    enc.train()
    enc.encode(["a text"])
    assert enc.backbone.config._attn_implementation == "eager"
    assert sdpa_built(attention_dropout=0.0).train().backbone.config._attn_implementation == "sdpa"
    assert sdpa_built(attn_implementation="sdpa").train().backbone.config._attn_implementation == "sdpa"


def test_auto_attention_keeps_sdpa_off_cpu():
    config = sdpa_built().backbone.config
    assert auto_attention(config, "sdpa", True, torch.device("cuda", 0)) == "sdpa"
    assert auto_attention(config, "sdpa", True, torch.device("cpu")) == "eager"
    assert auto_attention(config, "flash_attention_2", True, torch.device("cpu")) == "flash_attention_2"


@pytest.mark.parametrize("model_type", ["bert", "eurobert"])
def test_eager_matches_sdpa_with_dropout_on(model_type):
    """SDPA with dropout on a CPU runs its math path: the same dropout draws as eager attention, so
    the embeddings and gradients are equal, dropout masks included."""
    sdpa, eager = pair(model_type, "mean", dropout=True, attn="sdpa")
    eager.backbone.config._attn_implementation = "eager"
    if model_type == "eurobert":
        for enc in (sdpa, eager):
            enc.backbone.config.attention_dropout = 0.1
    assert_match(sdpa, eager, atol=1e-6)


def test_auto_attention_with_gradient_checkpointing_recomputes_with_the_forwards_implementation():
    """The recomputation in the backward runs after the forward returned: the implementation is the
    mode's (set by train()), not restored at the end of a forward."""
    plain = sdpa_built()
    ckpt = sdpa_built(gradient_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    plain.train(), ckpt.train()
    assert_match(plain, ckpt, atol=1e-6)


# ---------------------------------------------------------------- packing: auto
def test_pack_min_saving_declines_a_batch_that_saves_too_few_rows():
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])  # 4 rows -> 3: saves 1/4
    ids = torch.ones(4, 4, dtype=torch.long)
    assert pack(ids, mask, pad_id=0, min_saving=0.25).input_ids.shape[0] == 3
    assert pack(ids, mask, pad_id=0, min_saving=0.26) is None


def test_packing_auto_packs_only_where_it_saves_enough_rows(monkeypatch):
    plain, auto = pair("bert", "mean", packing="auto")
    packed = []
    forward = auto.packed_hidden
    monkeypatch.setattr(auto, "packed_hidden", lambda p, kw: packed.append(p) or forward(p, kw))
    assert_match(plain, auto, atol=1e-5)
    assert len(packed) == 1 and packed[0].input_ids.shape[0] == 3  # TEXTS: 6 rows -> 3
    # 9 texts of 10 tokens ([CLS] 8 characters [SEP]) and 2 of 4: 11 rows -> 10, a saving of 1/11 < 10%
    batch = auto.tokenize(["abcdefgh"] * 9 + ["ab"] * 2)
    auto(**batch)
    assert len(packed) == 1
    assert pack(**batch, pad_id=auto.tokenizer.pad_token_id).input_ids.shape[0] == 10  # packing=true would


def test_packing_auto_is_off_where_the_backbone_cannot_pack():
    plain = Encoder("tiny:qwen3", **SETTINGS["qwen3"])
    plain.backbone.config._attn_implementation = "flash_attention_2"  # no flash-attn package on CPU
    assert Encoder(plain.backbone, tokenizer=plain.tokenizer, packing="auto").packing is False


def test_packing_setting_is_checked_naming_the_key():
    with pytest.raises(ValueError, match="student.packing must be true, false or 'auto', got 'yes'"):
        Encoder("tiny:bert", packing="yes")


# ---------------------------------------------------------------- one forward for several batches
@pytest.mark.parametrize("model_type", ["bert", "qwen3"])
@pytest.mark.parametrize("packing", [False, True])
def test_forward_many_equals_one_forward_each(model_type, packing):
    """Query, document and negatives batches of different widths: merged when the encoder packs (one
    backbone forward), else one forward each (widths differ); the same embeddings and gradients."""
    enc = pair(model_type, "mean", packing=packing)[1]
    batches = [enc.tokenize(TEXTS[:2]), enc.tokenize(TEXTS[2:4]), enc.tokenize(TEXTS[3:] * 2)]
    calls = []
    enc.backbone.register_forward_pre_hook(lambda *a: calls.append(1))
    weights = [
        torch.randn(len(b["input_ids"]), enc.dim, generator=torch.Generator().manual_seed(i))
        for i, b in enumerate(batches)
    ]

    def run(embed) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        enc.zero_grad()
        out = embed()
        sum((o * w).sum() for o, w in zip(out, weights, strict=True)).backward()
        return [o.detach() for o in out], {
            n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None
        }

    many, many_grads = run(lambda: enc.forward_many(batches))
    assert len(calls) == (1 if packing else 3)
    each, each_grads = run(lambda: [enc(**b) for b in batches])
    for a, b in zip(many, each, strict=True):
        assert (a - b).abs().max() <= 1e-5
    for name, g in each_grads.items():
        assert (many_grads[name] - g).abs().max() <= 1e-5 * max(1.0, float(g.abs().max())), name


def test_forward_many_merges_batches_of_one_width_without_packing():
    enc = pair("bert", "mean")[1]
    batches = [enc.tokenize(["abcd", "ef"]), enc.tokenize(["ghij", "klm"])]
    calls = []
    enc.backbone.register_forward_pre_hook(lambda *a: calls.append(1))
    many = enc.forward_many(batches)
    assert len(calls) == 1
    for a, b in zip(many, [enc(**b) for b in batches], strict=True):
        assert (a - b).abs().max() <= 1e-6
