"""What our training knows about an exported model, for its model card.

sentence-transformers writes ``README.md`` (``SentenceTransformer.save``: architecture, usage snippet,
library versions; ``jina5.model.st_format``). :func:`add_card_section` adds a "jina5" section with what only
the training run knows, from a :class:`CardInfo`:

- the base model (a hub id, followed through ``bundled:`` / ``hub:`` prefixes and through saved encoder
  directories to the model they started from: :func:`resolve_base_model`);
- the named prompts, pooling and EOS handling, the Matryoshka dims (``objective.matryoshka.dims`` when
  it was enabled; ``SentenceTransformer(dir, truncate_dim=d)``);
- the training objective (loss weights), and our metrics: the last logged ones of ``done.json`` and,
  given a results store, the evaluation suite's task-type averages of this model with their bootstrap
  intervals (``jina5.export.add_eval_metrics``);
- the training data, from the run's ``data_manifest.json``: each dataset's name, source, hub id (an
  ``hf:`` set read from the hub), rows and languages (``jina5.data.languages``); the card's languages are
  their union;
- the license: ``export.license`` when the config sets one, else the base model's, read from the
  ``license`` of its model card's metadata (``README.md``) where we hold it: a bundled model, a local model
  directory, or a saved encoder directory and the model it started from (:func:`base_model_license`).
  The card names where the license was read.

sentence-transformers' own card fields get the same facts (its YAML metadata ``license``, ``language``,
``datasets``: the hub ids; its "Training Datasets"), so none of them says "Unknown" when the run knows it.

A :class:`CardInfo` comes from a run directory (``config.yaml`` + ``done.json`` + ``data_manifest.json``:
:func:`card_from_run`) or from the resolved config, summary and manifest at the end of training
(:func:`card_from_config`); the encoder directory keeps it as ``jina5_card.json`` so an export of that
directory alone still has it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jina5.model.encoder import Encoder

log = logging.getLogger(__name__)

CARD_FILE = "jina5_card.json"
DATA_MANIFEST = "data_manifest.json"  # what jina5.data.manifest writes into the run directory
SECTION_TITLE = "## jina5"
_PREFIXES = ("hub:", "bundled:")
LICENSE_KEY = "export.license"  # the config key that sets the card's license


@dataclass
class CardInfo:
    """Training facts for the model card; every field is optional (None / empty: not known)."""

    base_model: str | None = None  # hub id of the model training started from
    experiment: str | None = None
    seed: int | None = None
    steps: int | None = None
    adapter: str | None = None  # the stage-2 adapter merged into the weights
    matryoshka_dims: list[int] | None = None
    objective: dict[str, float] = field(default_factory=dict)  # loss name -> weight
    train_metrics: dict[str, float] = field(default_factory=dict)  # done.json's last logged metrics
    eval_metrics: dict[str, float] = field(default_factory=dict)  # task type (and "overall") -> score
    eval_run: str | None = None  # the results store's run_id of ``eval_metrics``
    eval_intervals: dict[str, list[float]] = field(default_factory=dict)  # level -> [low, high]
    eval_confidence: float | None = None  # of ``eval_intervals`` (0.95)
    license: str | None = None
    license_source: str | None = None  # where ``license`` was read (a model card, or the config key)
    languages: list[str] = field(default_factory=list)  # ISO 639 codes of the training data
    datasets: list[dict[str, Any]] = field(default_factory=list)  # :func:`training_data` entries

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> CardInfo:
        return cls(**json.loads(path.read_text()))


def resolve_base_model(source: str | None, depth: int = 4) -> str | None:
    """The hub id an encoder ``source`` started from, or None (``tiny:``, a directory that names none).

    ``hub:<id>`` / ``bundled:<id>`` -> ``<id>``; a hub id (``owner/name``) -> itself; a saved encoder
    directory -> its ``jina5_card.json``'s base model, else that of the ``source`` in its
    ``jina5_encoder.json`` (followed ``depth`` levels); ``<source>+<task>`` (a merged adapter) -> that
    of ``<source>``.
    """
    if not source or depth < 0 or source.startswith("tiny:"):
        return None
    for prefix in _PREFIXES:
        if source.startswith(prefix):
            return source.removeprefix(prefix)
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / CARD_FILE).exists():
            found = CardInfo.load(path / CARD_FILE).base_model
            if found:
                return found
        settings = path / "jina5_encoder.json"
        if settings.exists():
            return resolve_base_model(json.loads(settings.read_text()).get("source"), depth - 1)
        return None
    if "+" in source:
        return resolve_base_model(source.rsplit("+", 1)[0], depth)
    from jina5.assets import is_path_like

    return source if source.count("/") == 1 and not is_path_like(source) else None


def readme_license(model_dir: Path) -> str | None:
    """The ``license`` of ``<model_dir>/README.md``'s YAML metadata (a Hugging Face model card), or None."""
    from huggingface_hub.repocard import metadata_load

    readme = model_dir / "README.md"
    found = (metadata_load(readme) or {}).get("license") if readme.is_file() else None
    return str(found) if found else None


def base_model_license(source: str | None, depth: int = 4) -> tuple[str | None, str | None]:
    """(license, where it was read) of the model an encoder ``source`` started from, or (None, None).

    A directory: its ``jina5_card.json``'s license (a saved encoder), else its ``README.md``'s, else that
    of the ``source`` in its ``jina5_encoder.json`` (followed ``depth`` levels); ``<source>+<task>``: that
    of ``<source>``; a bundled model (``jina5.assets.BUNDLED_MODELS``, also as ``hub:`` / ``bundled:``):
    its ``README.md``'s. Any other hub id: None (nothing is downloaded for a card)."""
    if not source or depth < 0 or source.startswith("tiny:"):
        return None, None
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / CARD_FILE).exists():
            card = CardInfo.load(path / CARD_FILE)
            if card.license:
                return card.license, card.license_source
        found = readme_license(path)
        if found:
            return found, f"the model card of {path}"
        settings = path / "jina5_encoder.json"
        if settings.exists():
            return base_model_license(json.loads(settings.read_text()).get("source"), depth - 1)
        return None, None
    if "+" in source:
        return base_model_license(source.rsplit("+", 1)[0], depth)
    from jina5.assets import BUNDLED_MODELS, AssetMissingError, prepare_bundled

    base = resolve_base_model(source)
    if base not in BUNDLED_MODELS:
        return None, None
    try:
        found = readme_license(prepare_bundled(base))
    except AssetMissingError as err:
        log.warning("the license of %s is not read (%s); set %s", base, err, LICENSE_KEY)
        return None, None
    return (found, f"the model card of {base}") if found else (None, None)


def card_license(configured: str | None, source: str | None) -> tuple[str | None, str | None]:
    """(license, where from): ``configured`` (``export.license``) when set, else the base model's
    (:func:`base_model_license`); a configured license that differs from the base model's is logged."""
    base, where = base_model_license(source)
    if not configured:
        return base, where
    if base and base != configured:
        log.warning(
            "%s=%s differs from the license of the base model (%s, %s)", LICENSE_KEY, configured, base, where
        )
    return str(configured), LICENSE_KEY


def training_data(manifest: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], list[str]]:
    """(datasets, languages) of a run's data manifest: per dataset its ``name``, ``source``, ``hub_id``
    (None: not read from the hub), ``rows`` (over all ranks), ``languages`` and ``texts_only``; the
    languages are the union over the datasets (sorted)."""
    entries = [
        {
            "name": d["name"],
            "source": d.get("source"),
            "hub_id": d.get("hub_id"),
            "rows": d.get("rows"),
            "languages": list(d.get("languages") or []),
            "texts_only": bool(d.get("texts_only")),
        }
        for d in (manifest or {}).get("datasets", [])
    ]
    return entries, sorted({lang for d in entries for lang in d["languages"]})


def card_from_config(
    cfg: Mapping[str, Any],
    summary: Mapping[str, Any] | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> CardInfo:
    """A :class:`CardInfo` from a resolved training config (a run's ``config.yaml``), its ``done.json``
    summary (steps, metrics) and its ``data_manifest.json`` (training data, languages)."""
    objective = cfg.get("objective") or {}
    mrl = objective.get("matryoshka") or {}
    summary = summary or {}
    student = cfg.get("student") or {}
    datasets, languages = training_data(manifest)
    license_, license_source = card_license((cfg.get("export") or {}).get("license"), student.get("source"))
    return CardInfo(
        base_model=resolve_base_model(student.get("source")),
        experiment=cfg.get("experiment_name"),
        seed=cfg.get("seed"),
        steps=summary.get("steps"),
        matryoshka_dims=[int(d) for d in mrl["dims"]] if mrl.get("enabled") else None,
        objective={str(k): float(v) for k, v in (objective.get("weights") or {}).items()},
        train_metrics={str(k): float(v) for k, v in (summary.get("metrics") or {}).items()},
        license=license_,
        license_source=license_source,
        languages=languages,
        datasets=datasets,
    )


def card_from_run(run: str | Path) -> CardInfo | None:
    """The :class:`CardInfo` of a run dir (``config.yaml`` + ``done.json`` + ``data_manifest.json``), else
    the ``jina5_card.json`` of an encoder dir (``run`` itself or ``run/encoder``), else None."""
    from omegaconf import OmegaConf

    run = Path(run)
    if (run / "config.yaml").exists():
        cfg = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=False)
        done, manifest = run / "done.json", run / DATA_MANIFEST
        return card_from_config(
            cfg,
            json.loads(done.read_text()) if done.exists() else None,
            json.loads(manifest.read_text()) if manifest.exists() else None,
        )
    for path in (run / CARD_FILE, run / "encoder" / CARD_FILE):
        if path.exists():
            return CardInfo.load(path)
    return None


# ---------------------------------------------------------------------------------------------- markdown
def card_section(
    card: CardInfo, encoder: Encoder, base_model: str | None, tokenizer_appends_eos: bool
) -> str:
    """The markdown of our section of the model card."""
    lines = [
        SECTION_TITLE,
        "",
        "Exported by jina5; `jina5.model.encoder.Encoder.from_pretrained(path)` loads it with these settings.",
        "",
    ]
    base = f"[{base_model}](https://huggingface.co/{base_model})" if base_model else "unknown"
    lines.append(f"- **Base model:** {base}")
    if card.license:
        lines.append(f"- **License:** {card.license} (from {card.license_source})")
    else:
        lines.append(
            f"- **License:** unknown (the base model's card names none we hold; set `{LICENSE_KEY}`)"
        )
    if card.adapter:
        lines.append(f"- **Task adapter:** `{card.adapter}` (LoRA, merged into the weights)")
    eos = ""
    if encoder.append_eos:
        who = "the tokenizer's template" if tokenizer_appends_eos else "the original tokenizer"
        eos = f"; the EOS token appended after truncation (by {who}) is the pooled token"
    lines.append(
        f"- **Pooling:** `{encoder.pooling}`{eos}; "
        f"{'L2-normalised' if encoder.normalize else 'not normalised'}; {encoder.max_length} tokens"
    )
    if encoder.prompts:
        prompts = ", ".join(f"`{name}`: `{prefix!r}`" for name, prefix in encoder.prompts.items())
        lines.append(f'- **Prompts:** {prompts} (`model.encode(texts, prompt_name="query")`)')
    else:
        lines.append("- **Prompts:** none")
    if card.matryoshka_dims:
        dims = ", ".join(str(d) for d in card.matryoshka_dims)
        lines.append(
            f"- **Matryoshka dims:** {dims} (`SentenceTransformer(path, truncate_dim={card.matryoshka_dims[0]})`)"
        )
    elif card.objective:  # a known training run without objective.matryoshka
        lines.append("- **Matryoshka dims:** none (trained without `objective.matryoshka`)")
    trained = {k: w for k, w in card.objective.items() if w}
    if trained:
        terms = " + ".join(f"{w:g} x {name}" for name, w in trained.items())
        logged = sorted(k for k, w in card.objective.items() if not w)
        lines.append(
            f"- **Training objective:** {terms}" + (f" (logged only: {', '.join(logged)})" if logged else "")
        )
    run = [
        f"experiment `{card.experiment}`" if card.experiment else "",
        f"seed {card.seed}" if card.seed is not None else "",
        f"{card.steps} steps" if card.steps is not None else "",
    ]
    if any(run):
        lines.append(f"- **Run:** {', '.join(r for r in run if r)}")
    if card.datasets:
        unknown = [d["name"] for d in card.datasets if not d["languages"]]
        languages = ", ".join(card.languages) or "unknown"
        lines.append(
            f"- **Languages:** {languages} (of the training data"
            + (f"; not known for {', '.join(unknown)})" if unknown else ")")
        )
        lines += ["", "### Training data", "", "| dataset | source | rows | languages |", "|---|---|---|---|"]
        for d in card.datasets:
            source = (
                f"[{d['hub_id']}](https://huggingface.co/datasets/{d['hub_id']})"
                if d["hub_id"]
                else f"`{d['source']}`"
            )
            rows = f"{d['rows']:,}" + (" texts" if d["texts_only"] else "") if d["rows"] is not None else "?"
            lines.append(f"| {d['name']} | {source} | {rows} | {', '.join(d['languages']) or 'unknown'} |")
    metrics = {k: v for k, v in card.train_metrics.items() if not (k.startswith("lr-") or k.endswith("/lr"))}
    if metrics:
        lines += ["", "### Training metrics (last logged)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items())]
    if card.eval_metrics:
        lines += [
            "",
            f"### Evaluation (jina5 suite, run `{card.eval_run}`: main metric, float32, full dim)",
            "",
        ]
        if card.eval_intervals and card.eval_confidence:
            level = f"{card.eval_confidence:.0%}"
            lines += [
                f"Intervals: {level} percentile bootstrap over the test items (`jina5.eval.bootstrap`).",
                "",
                f"| task type | score | {level} interval |",
                "|---|---|---|",
            ]
            for name, value in card.eval_metrics.items():
                low, high = card.eval_intervals.get(name, (None, None))
                span = f"[{low:.4f}, {high:.4f}]" if low is not None else "none"
                lines.append(f"| {name} | {value:.4f} | {span} |")
        else:
            lines += [
                "No intervals: the results store holds no per-item scores of this run (evaluate it again).",
                "",
                "| task type | score |",
                "|---|---|",
            ]
            lines += [f"| {name} | {value:.4f} |" for name, value in card.eval_metrics.items()]
    return "\n".join(lines) + "\n"


def add_card_section(
    readme: Path, card: CardInfo, encoder: Encoder, base_model: str | None, tokenizer_appends_eos: bool
) -> None:
    """Insert :func:`card_section` into sentence-transformers' ``readme`` before its "Training Details"
    (at the end when it has none)."""
    text = readme.read_text(encoding="utf8") if readme.exists() else ""
    section = card_section(card, encoder, base_model, tokenizer_appends_eos)
    anchor = "## Training Details"
    if anchor in text:
        text = text.replace(anchor, section + "\n" + anchor, 1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    readme.write_text(text, encoding="utf8")
