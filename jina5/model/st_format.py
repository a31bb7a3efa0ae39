"""The sentence-transformers side of a saved encoder: plain ``SentenceTransformer(dir)`` (no custom code,
no ``trust_remote_code``) gives ``Encoder.encode``'s vectors, and a model card is written.

Three things make the two agree:

- **EOS.** An ``append_eos`` encoder (last-token pooling: Qwen3, EuroBERT) pools an EOS appended after
  truncation. The exported ``tokenizer.json`` appends it itself: its post-processor template gets the
  EOS at the end (``$A`` -> ``$A <eos>``, after any [CLS]/[SEP]/BOS it already adds; the way
  Qwen3-Embedding ships its tokenizer). Truncation counts template tokens, so ``tokenizer(text,
  truncation=True, max_length=L)`` keeps L - 1 tokens and the EOS, as ``Encoder.tokenize_ids`` does.
  ``jina5_encoder.json`` then says ``"tokenizer_appends_eos": true`` and the ``Encoder`` loaded from
  the directory appends nothing itself (``Encoder.tokenizer_appends_eos``). A tokenizer that already
  appends the EOS (Qwen3-Embedding) is left as it is: ``Encoder`` truncates such texts to
  ``max_length - 1`` tokens, so sentence-transformers gets ``max_seq_length = max_length - 1``.
- **No [CLS] pooler.** Our backbones are saved without the unused BERT-style pooler;
  ``sentence_bert_config.json`` passes ``model_kwargs: {"add_pooling_layer": false}`` so
  sentence-transformers builds the backbone without one (no "newly initialized" load report).
- **Right padding** in the exported tokenizer (sentence-transformers passes no position ids; the
  ``Encoder`` restores its own ``padding_side`` from ``jina5_encoder.json``).

The modules (Transformer -> Pooling (our pooling) -> Normalize, when ``encoder.normalize``), the named
prompts and ``similarity_fn_name`` are written by sentence-transformers' own ``SentenceTransformer.save``,
which also writes ``README.md`` (its model card, plus our section: ``jina5.model.card``). The backbone
weights, its ``config.json`` and the tokenizer files stay the ones ``jina5.model.io`` wrote: the
Transformer module writes only its ``sentence_bert_config.json``.
"""

from __future__ import annotations

import copy
import json
import logging
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer

from jina5.model.card import CardInfo, add_card_section, resolve_base_model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from jina5.model.encoder import Encoder

log = logging.getLogger(__name__)

ST_POOLING = {"mean": "mean", "cls": "cls", "last_token": "lasttoken"}  # ours -> sentence-transformers'
ST_CONFIG = "sentence_bert_config.json"
PROBE = "a"  # a text whose tokenization ends in the EOS only if the tokenizer appends one


# ---------------------------------------------------------------------------------------------- tokenizer
def appends_eos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether ``tokenizer`` (with its special tokens) ends every text with its EOS token."""
    ids = tokenizer(PROBE, add_special_tokens=True)["input_ids"]
    return tokenizer.eos_token_id is not None and bool(ids) and ids[-1] == tokenizer.eos_token_id


def with_eos(post_processor: dict | None, eos: str, eos_id: int) -> dict:
    """A ``tokenizers`` post-processor (its JSON) that does what ``post_processor`` does and then appends
    ``eos`` to each sequence: a TemplateProcessing gets ``eos`` at the end of its single and pair
    templates; a Sequence gets it in its TemplateProcessing (or a new one at its end); None becomes
    ``$A <eos>``; a ByteLevel post-processor is kept in front of the new template (as in Llama 3)."""
    eos_entry = {"id": eos, "ids": [eos_id], "tokens": [eos]}
    if post_processor is None:
        a, b = {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}
        post_processor = {"type": "TemplateProcessing", "single": [a], "pair": [a, b], "special_tokens": {}}
    kind = post_processor.get("type")
    if kind == "TemplateProcessing":
        template = copy.deepcopy(post_processor)
        for key in ("single", "pair"):
            type_id = _last_type_id(template[key])
            template[key].append({"SpecialToken": {"id": eos, "type_id": type_id}})
        template["special_tokens"][eos] = eos_entry
        return template
    if kind == "Sequence":
        sequence = copy.deepcopy(post_processor)
        steps = sequence["processors"]
        at = [i for i, step in enumerate(steps) if step.get("type") == "TemplateProcessing"]
        if at:
            steps[at[-1]] = with_eos(steps[at[-1]], eos, eos_id)
        else:
            steps.append(with_eos(None, eos, eos_id))
        return sequence
    if kind == "ByteLevel":
        return {"type": "Sequence", "processors": [post_processor, with_eos(None, eos, eos_id)]}
    raise ValueError(
        f"cannot append the EOS to a {kind} post-processor; export a tokenizer whose post-processor is a "
        "TemplateProcessing, a Sequence, ByteLevel or none"
    )


def _last_type_id(pieces: list[dict]) -> int:
    """The type id of the last piece of a template (0 for an empty one)."""
    return next(iter(pieces[-1].values()))["type_id"] if pieces else 0


def export_tokenizer(encoder: Encoder) -> tuple[PreTrainedTokenizerBase, bool]:
    """A copy of ``encoder.tokenizer`` to save with it (right padding; the EOS in its template for an
    ``append_eos`` encoder whose tokenizer does not append one yet), and whether the saved tokenizer
    appends the EOS on the encoder's behalf (``Encoder.tokenizer_appends_eos`` of the loaded encoder)."""
    tokenizer = copy.deepcopy(encoder.tokenizer)
    tokenizer.padding_side = "right"
    if not encoder.append_eos or encoder.tokenizer_appends_eos:
        return tokenizer, encoder.append_eos and encoder.tokenizer_appends_eos
    if appends_eos(tokenizer):  # it already did (e.g. Qwen3-Embedding): Encoder keeps max_length - 1 tokens
        return tokenizer, False
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    backend["post_processor"] = with_eos(
        backend["post_processor"], tokenizer.eos_token, tokenizer.eos_token_id
    )
    tokenizer.backend_tokenizer.post_processor = Tokenizer.from_str(json.dumps(backend)).post_processor
    return tokenizer, True


def st_max_seq_length(encoder: Encoder, tokenizer_appends_eos: bool) -> int:
    """sentence-transformers' truncation length: ``max_length`` tokens, template included, except for an
    ``append_eos`` encoder whose original tokenizer appended the EOS itself (``max_length - 1``)."""
    return encoder.max_length - int(encoder.append_eos and not tokenizer_appends_eos)


# ---------------------------------------------------------------------------------------------- modules
def st_train_datasets(card: CardInfo) -> list[dict]:
    """The training datasets as sentence-transformers' card data lists them (its "Training Datasets"):
    name, hub id, size (rows), columns and the loss (our objective's weights)."""
    weights = json.dumps({k: w for k, w in card.objective.items() if w}, indent=4)
    loss = {"fullname": "jina5.training.objective.Objective"}
    if card.objective:
        loss["config_code"] = textwrap.indent(f"```json\n{weights}\n```", "  ")
    return [
        {
            "name": d["name"],
            **({"id": d["hub_id"]} if d["hub_id"] else {}),
            "size": d["rows"],
            "columns": ["document"] if d["texts_only"] else ["query", "document"],
            "loss": loss,
        }
        for d in card.datasets
    ]


def write_sentence_transformers_files(
    encoder: Encoder,
    path: Path,
    tokenizer_appends_eos: bool,
    card: CardInfo | None = None,
    model_id: str | None = None,
) -> None:
    """The sentence-transformers modules and ``README.md`` of a plain encoder at ``path``, where
    ``jina5.model.io`` has written the backbone and ``export_tokenizer``'s tokenizer (module docstring).
    ``card`` adds our training facts to the model card; ``model_id`` (``owner/name``) is the hub repo
    the card's usage snippet loads."""
    from sentence_transformers import SentenceTransformer, SentenceTransformerModelCardData
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    from jina5.model.io import no_pooler_kwargs

    model_kwargs = no_pooler_kwargs(path)
    max_seq_length = st_max_seq_length(encoder, tokenizer_appends_eos)
    transformer = Transformer(str(path), model_kwargs=dict(model_kwargs), max_seq_length=max_seq_length)
    # sentence-transformers saves the first module's weights and tokenizer in the root: ours are there
    transformer.save = lambda output_path, *args, **kwargs: transformer.save_config(output_path)
    modules = [transformer, Pooling(encoder.dim, ST_POOLING[encoder.pooling])]
    if encoder.normalize:
        modules.append(Normalize())
    card = card or CardInfo()
    base_model = card.base_model or resolve_base_model(encoder.source)
    card_data = SentenceTransformerModelCardData(
        local_files_only=True,  # no hub lookups: the base model and the datasets are named below
        model_id=model_id,
        language=list(card.languages),
        license=card.license,
        train_datasets=st_train_datasets(card),
        tags=["sentence-transformers", "sentence-similarity", "feature-extraction", "dense", "jina5"]
        + (["matryoshka"] if card.matryoshka_dims else []),
    )
    card_data.base_model = base_model
    card_data.datasets = list(dict.fromkeys(d["hub_id"] for d in card.datasets if d["hub_id"]))
    model = SentenceTransformer(
        modules=modules,
        prompts=dict(encoder.prompts),
        similarity_fn_name="cosine",
        device="cpu",
        model_card_data=card_data,
    )
    model.save(str(path))
    config_file = path / ST_CONFIG
    config = json.loads(config_file.read_text())
    config.update(max_seq_length=max_seq_length, do_lower_case=False)
    if model_kwargs:
        config["model_kwargs"] = model_kwargs
    config_file.write_text(json.dumps(config, indent=2))
    add_card_section(path / "README.md", card, encoder, base_model, tokenizer_appends_eos)
    log.debug("sentence-transformers files and model card written at %s", path)
