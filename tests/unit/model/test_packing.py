"""Packing's host-side plan: from the lengths the collator already holds, no read of the device mask."""

from __future__ import annotations

import pytest
import torch
from host_reads import HostReads

from jina5.model.encoder import Encoder
from jina5.model.packing import pack


@pytest.mark.parametrize("side", ["left", "right"])
def test_pack_from_host_lengths_reads_nothing_from_the_device(side):
    lengths = [5, 2, 3, 1, 4]
    width = max(lengths)
    ids = torch.arange(len(lengths) * width).view(len(lengths), width) + 10
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, width - n :] = 1 if side == "left" else 0
        mask[row, :n] = 1 if side == "right" else mask[row, :n]
    assert mask.sum(1).tolist() == lengths
    expected = pack(ids, mask, pad_id=0)
    with HostReads() as reads:
        packed = pack(ids, mask, pad_id=0, lengths=lengths, left_padded=side == "left")
    assert reads.calls == []  # the mask never goes to the host (a device sync on every forward)
    for field in ("input_ids", "position_ids", "segments", "src", "dest"):
        assert torch.equal(getattr(packed, field), getattr(expected, field)), field
    assert packed.shape == expected.shape


def test_a_packing_encoder_hands_its_batch_lengths_to_pack(monkeypatch):
    import jina5.model.encoder as encoder_module

    enc = Encoder("tiny:qwen3", padding_side="left", append_eos=True, packing=True)
    enc.train()
    for m in enc.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    batch = enc.tokenize(["a b c d e", "f", "g h"])
    seen = []
    real = encoder_module.pack
    monkeypatch.setattr(encoder_module, "pack", lambda *a, **k: seen.append(k) or real(*a, **k))
    lengths = batch["attention_mask"].sum(1).tolist()
    out = enc(**batch, lengths=lengths)
    assert seen[0]["lengths"] == lengths and seen[0]["left_padded"] is True
    assert torch.allclose(out, enc(**batch), atol=1e-6)  # the same vectors as the mask-read plan


def test_the_collator_hands_a_packing_encoder_its_lengths():
    from types import SimpleNamespace

    from jina5.data.collate import PairCollator

    enc = Encoder("tiny:qwen3", padding_side="left", append_eos=True, packing=True, prompts={"query": "Q: "})
    collator = PairCollator.__new__(PairCollator)
    collator.encoder = enc
    tokens = collator.tokens(["a b c d e", "f"], "query", 16)
    assert tokens["lengths"] == tokens["attention_mask"].sum(1).tolist() and tokens["lengths"][1] < 5
    collator.encoder = SimpleNamespace(tokenize=enc.tokenize, packing=False)
    assert "lengths" not in collator.tokens(["a b"], "query", 16)  # unchanged batches without packing


def test_packed_xlm_roberta_positions_are_the_models_own_per_sequence(monkeypatch):
    """XLM-R numbers a text's tokens padding_idx + 1, padding_idx + 2, ... (transformers'
    ``create_position_ids_from_input_ids``); in a packed row every sequence restarts there, and the
    backbone gets exactly those positions."""
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaEmbeddings

    import jina5.model.encoder as encoder_module

    enc = Encoder("tiny:xlm-roberta", packing=True)
    enc.train()
    pad = enc.tokenizer.pad_token_id
    assert pad == enc.backbone.config.pad_token_id == 1  # XLM-R's layout: <s>=0, <pad>=1
    packs, seen = [], {}
    real = encoder_module.pack
    monkeypatch.setattr(encoder_module, "pack", lambda *a, **k: packs.append(real(*a, **k)) or packs[-1])
    enc.backbone.embeddings.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    batch = enc.tokenize(["a b c d e", "f", "g h", "ij"])
    enc(**batch)
    packed = packs[0]
    assert packed.input_ids.shape[0] < 4  # it packed
    assert torch.equal(seen["position_ids"], packed.position_ids)
    for b in range(4):
        text = batch["input_ids"][b][batch["attention_mask"][b].bool()]
        slots = packed.segments == b
        assert torch.equal(packed.input_ids[slots], text)
        own = XLMRobertaEmbeddings.create_position_ids_from_input_ids(text[None], padding_idx=pad)[0]
        assert own[0] == pad + 1 and torch.equal(packed.position_ids[slots], own), b
