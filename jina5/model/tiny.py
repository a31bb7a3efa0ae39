"""Tiny random-init backbones (BERT, MPNet, XLM-RoBERTa, Qwen3, EuroBERT) with a character-level tokenizer.

For tests and smoke runs of code paths only (never for quality): they build offline in milliseconds
and exercise the same classes as the paper-scale architectures.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoConfig, AutoModel, PreTrainedModel, PreTrainedTokenizerFast

from jina5.model.rope import set_rope_theta

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[EOS]")
# fairseq's order (<s> <pad> </s> <unk>), as XLM-R's tokenizer has it: the pad id is 1, so the model's
# learned positions start at padding_idx + 1 = 2 (jina5.model.encoder.position_offset)
FAIRSEQ_SPECIALS = ("[CLS]", "[PAD]", "[SEP]", "[UNK]", "[EOS]")
FAIRSEQ_TYPES = ("xlm-roberta",)
DECODERS = ("qwen3",)


def char_tokenizer(add_cls_sep: bool = True, specials: tuple[str, ...] = SPECIALS) -> PreTrainedTokenizerFast:
    """Lower-case letters, digits and punctuation, one token per character (whitespace split); the
    ``specials`` (the names of SPECIALS, in any order) take ids 0..4."""
    vocab = {
        tok: i
        for i, tok in enumerate([*specials, *string.ascii_lowercase, *string.digits, *string.punctuation])
    }
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=1000))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Split("", "isolated")]
    )
    from tokenizers import normalizers

    tok.normalizer = normalizers.Lowercase()
    if add_cls_sep:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        eos_token="[EOS]",
    )


def tiny_model_and_tokenizer(
    model_type: str,
    hidden: int = 32,
    layers: int = 6,
    heads: int = 4,
    seed: int = 0,
    attn_implementation: str = "eager",
    rope_theta: float | None = None,
    rope_key: str = "rope_theta",
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A random-init ``model_type`` backbone with ``layers`` blocks of width ``hidden``, and its tokenizer;
    ``rope_theta`` replaces the config's RoPE base (``jina5.model.rope``; the weights do not depend on it;
    ``rope_key`` names it in the error for a backbone without RoPE)."""
    specials = FAIRSEQ_SPECIALS if model_type in FAIRSEQ_TYPES else SPECIALS
    tokenizer = char_tokenizer(add_cls_sep=model_type not in DECODERS, specials=specials)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    if model_type in ("qwen3", "eurobert"):
        common.update(
            num_key_value_heads=heads,
            head_dim=hidden // heads,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    if model_type == "eurobert":
        common.update(mask_token_id=tokenizer.unk_token_id)
    config = AutoConfig.for_model(model_type, **common)
    if rope_theta is not None:
        set_rope_theta(config, rope_theta, rope_key)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config, attn_implementation=attn_implementation)
    model.eval()
    return model, tokenizer
