"""Export a run's encoder as a sentence-transformers model (with a model card), or combine adapters.

    python -m jina5.export run=<run dir> [task=<task>] [out=<dir>] [results=<results.jsonl>] [license=<id>]
                           [rope_theta=<theta>] [max_seq_length=<tokens>] [push_to_hub=<owner/name>] [private=true]
                           [backend=torch|onnx|openvino] [quantize=none|int8]
        -> a sentence-transformers directory: for a stage-2 run, the adapter merged into the weights
           (W' = W + alpha/r B A) and the task's prefixes as named prompts ("query", "document"); for a
           plain encoder (stage 1), that encoder. ``SentenceTransformer(out).encode(texts,
           prompt_name="query")`` equals ``encoder.encode(texts, task=task, prompt="query")`` (no custom
           code, no peft needed). Default out: <run>/export/<task> (<run>/export/model without adapters).
           Its README.md is sentence-transformers' model card plus the run's facts (``jina5.model.card``:
           base model, license, training data and languages (data_manifest.json), prompts, Matryoshka
           dims, objective, done.json's metrics, and with ``results`` the evaluation suite's averages of
           this run's encoder with their bootstrap intervals); ``license`` sets the card's license (else
           the run's ``export.license``, else the base model's). ``push_to_hub`` uploads ``out`` to that hub
           repo (created if missing; needs a hub token, e.g. ``huggingface-cli login``); every hub request
           fails after ``hub_timeout`` seconds (default 60) without progress, and a failed upload says that
           the local export is complete and how to retry the upload alone (below).
           ``rope_theta`` / ``max_seq_length``: inference settings written instead of the encoder's (the
           RoPE base in config.json, the truncation length; a training run's own export takes them from
           ``export.rope_theta`` / ``export.max_seq_length``: conf/train.yaml).
           ``backend=onnx|openvino``: the directory also gets that backend's inference graph, and with
           ``quantize=int8`` its int8 graph (``jina5.model.graph_export``: ONNX int8 is dynamic, OpenVINO
           int8 is calibrated on the bundled ``lee_background`` training texts). ``jina5-evaluate
           model=<out> backend=... quantize=...`` scores a graph; ``jina5.model.graph_runtime`` runs it
           inside an ``Encoder`` or a ``SentenceTransformer``.

    python -m jina5.export runs=[<run dir>,...] out=<dir> [rope_theta=...] [max_seq_length=...] [push_to_hub=...]
        -> one multi-adapter directory (base weights + adapters/<task>/ for every adapter of every run)
           that ``Encoder.from_pretrained(out)`` loads with all its adapters. The runs must share
           the same frozen backbone (the same stage-1 student); this is checked weight by weight.

    python -m jina5.export upload=<export dir> push_to_hub=<owner/name> [private=true] [hub_timeout=<s>]
        -> uploads a finished export again (the retry of a failed upload), without exporting anything.

``run`` / ``runs`` entries may be run dirs (holding ``encoder/``) or encoder dirs themselves. ``out`` is
written atomically (``jina5.model.io.save_encoder``): a killed export leaves no half-written folder, the
next export removes what it left, and a folder holding files an export does not write is refused.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from jina5.data.corpora import load_corpus
from jina5.eval.bootstrap import CONFIDENCE, MissingItems, interval, row_replicates, run_items
from jina5.eval.encoding import model_fingerprint
from jina5.eval.store import ResultsStore
from jina5.eval.summary import type_averages
from jina5.model.card import CardInfo, card_from_run
from jina5.model.encoder import Encoder
from jina5.model.graph_export import check_graph, export_graphs
from jina5.model.io import ADAPTERS_DIR, JINA5_CONFIG

log = logging.getLogger(__name__)
CALIBRATION_CORPUS = "lee_background"  # 300 news texts of the stage-1 training mix (conf/data/stage1.yaml)

HUB_TIMEOUT = 60.0  # seconds a hub request may go without progress (hub_timeout=)


class UploadFailed(RuntimeError):
    """The upload to the hub failed or timed out; the local export it names is complete."""


def add_eval_metrics(card: CardInfo, results: str | Path, encoder: Encoder) -> CardInfo:
    """``card`` with the task-type averages (main metric, float32, full dim) of ``encoder``'s evaluation
    in the results store ``results`` (matched by model fingerprint, fp32 or bf16 encodes): of the run
    that covers the most task types (a smoke suite never hides the full one), the latest on a tie;
    unchanged when the store has none. Each average gets its 95% percentile bootstrap interval over the
    run's test items (``jina5.eval.bootstrap``: :func:`~jina5.eval.bootstrap.row_replicates` of the run
    alone, every level aggregated as the average is); none when the store has no per-item scores of it."""
    precision = encoder.compute_precision
    fingerprints = []
    for compute in ("fp32", "bf16"):
        encoder.compute_precision = compute
        fingerprints.append(model_fingerprint(encoder))
    encoder.compute_precision = precision
    store = ResultsStore(results)
    runs = [
        (type_averages(run), str(run["time"].max()), str(run_id), run)
        for run_id, run in store.read(model_fingerprint=fingerprints).groupby("run_id")
    ]
    runs = [r for r in runs if r[0]]
    if not runs:
        return card
    card.eval_metrics, _, card.eval_run, run = max(runs, key=lambda r: (len(r[0]), r[1]))
    try:
        levels = row_replicates([run_items(store, run)]).levels
    except MissingItems as err:
        log.warning("the card's scores get no interval: %s", err)
        return card
    intervals = {level: interval(values) for level, values in levels.items()}
    card.eval_intervals = {level: [i.low, i.high] for level, i in intervals.items()}
    card.eval_confidence = CONFIDENCE
    return card


def encoder_dir(run: str | Path) -> Path:
    """``<run>/encoder`` for a run dir, else ``run`` itself (an encoder dir)."""
    path = Path(run)
    return path / "encoder" if (path / "encoder").is_dir() else path


def load_run_encoder(run: str | Path) -> Encoder:
    """The encoder saved in a run dir (``<run>/encoder``) or in an encoder dir, with its adapters."""
    path = encoder_dir(run)
    if not path.is_dir():
        raise FileNotFoundError(f"{run}: neither a run dir with encoder/ nor an encoder dir")
    return Encoder.from_pretrained(path)


def export_sentence_transformers(encoder: Encoder, task: str | None, out: str | Path, **save: Any) -> Path:
    """Write ``encoder`` with adapter ``task`` merged as a sentence-transformers directory at ``out``.
    ``task=None`` takes the encoder's only adapter; an encoder without adapters is written as it is.
    ``save``: the keywords of ``Encoder.save_pretrained`` (``card``, with the merged adapter named in it;
    ``model_id``, the hub repo it names; the inference settings ``rope_theta`` / ``max_length``)."""
    if not encoder.adapters:
        if task is not None:
            raise ValueError(f"task={task!r}: the encoder has no adapters")
        path = encoder.save_pretrained(out, **save)
        log.info("exported encoder, prompts %s -> %s (sentence-transformers)", encoder.prompts, path)
        return path
    if task is None:
        if len(encoder.adapters) != 1:
            raise ValueError(f"task=? the encoder has adapters {encoder.adapters}; name one")
        task = encoder.adapters[0]
    merged = encoder.merged(task)
    if save.get("card") is not None:
        save = {**save, "card": replace(save["card"], adapter=task)}
    path = merged.save_pretrained(out, **save)
    log.info(
        "exported adapter %r merged, prompts %s -> %s (sentence-transformers)", task, merged.prompts, path
    )
    return path


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it names a hub repo as ``owner/name``, else ValueError (before anything is written)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"push_to_hub={repo_id!r}: {err}") from err
    if repo_id.count("/") != 1:
        raise ValueError(f"push_to_hub={repo_id!r}: name the repo as owner/name")
    return repo_id


@contextmanager
def hub_timeout(seconds: float) -> Iterator[None]:
    """Every HTTP request huggingface_hub makes in the block fails after ``seconds`` without progress
    (httpx's connect, read, write and pool timeouts). Its shared client has no timeout of its own, so a hub
    that accepts the connection and never answers would hang an upload for good; huggingface_hub retries a
    timed-out request up to 5 times (waits of 1-8 s), so a call gives up after about 6 x ``seconds`` + 23 s."""
    import huggingface_hub
    from huggingface_hub.utils import _http  # the factory in use has no public getter

    previous = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)

    def bounded():
        client = previous()
        client.timeout = seconds
        return client

    huggingface_hub.set_client_factory(bounded)  # closes the current client: the next request gets one
    try:
        yield
    finally:
        huggingface_hub.set_client_factory(previous)


def upload_command(folder: Path, repo_id: str, private: bool | None, timeout: float) -> str:
    """The command that uploads the export ``folder`` again, alone."""
    args = ["python", "-m", "jina5.export", f"upload={folder}", f"push_to_hub={repo_id}"]
    args += ["private=true"] if private else []
    return shlex.join([*args, f"hub_timeout={timeout:g}"])


def check_timeout(value: object) -> float:
    """``hub_timeout`` as seconds > 0, else ValueError naming the key (before anything is written)."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0:
        raise ValueError(f"hub_timeout={value!r}: give the seconds a hub request may wait, > 0 (default 60)")
    return seconds


def push_to_hub(
    folder: str | Path, repo_id: str, private: bool | None = None, timeout: float = HUB_TIMEOUT
) -> str:
    """Upload ``folder`` to the hub model repo ``repo_id`` (created if missing); the commit's URL. Every
    request fails after ``timeout`` seconds without progress (:func:`hub_timeout`); any failure raises
    :class:`UploadFailed`, saying that the local export is complete and how to retry the upload alone."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    log.info(
        "uploading %s to %s (each hub request gives up after %g s without progress)", folder, repo_id, timeout
    )
    try:
        with hub_timeout(timeout):
            api = HfApi()
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=str(folder),
                repo_type="model",
                commit_message=f"Upload {folder.name} exported by jina5",
            )
    except Exception as err:
        raise UploadFailed(
            f"push_to_hub={repo_id}: the upload of {folder} failed ({type(err).__name__}: {err}). The local "
            f"export at {folder} is complete; only the upload failed. Retry the upload alone with: "
            f"{upload_command(folder, repo_id, private, timeout)}"
        ) from err
    url = str(getattr(commit, "commit_url", commit))
    log.info("pushed %s to %s (%s)", folder, repo_id, url)
    return url


def same_backbone(a: Encoder, b: Encoder) -> bool:
    """Whether the two encoders' base weights (adapters off) are identical."""
    sa, sb = a.base_model().state_dict(), b.base_model().state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def combine_adapters(
    runs: Sequence[str | Path],
    out: str | Path,
    rope_theta: float | None = None,
    max_length: int | None = None,
) -> Encoder:
    """One encoder holding every adapter of ``runs`` (same backbone), saved at ``out`` (with the inference
    settings ``rope_theta`` / ``max_length`` when given) and returned."""
    if not runs:
        raise ValueError("runs=[...] is empty")
    combined = load_run_encoder(runs[0])
    for run in runs[1:]:
        other = load_run_encoder(run)
        if not same_backbone(combined, other):
            raise ValueError(
                f"{run}: its backbone differs from {runs[0]}'s; adapters of different stage-1 "
                "students cannot share one directory"
            )
        for task in other.adapters:
            if task in combined.adapters:
                raise ValueError(f"adapter {task!r} is in more than one run ({run})")
            combined.load_adapter(encoder_dir(run) / ADAPTERS_DIR / task, task)
            if task in other.task_prompts:
                combined.task_prompts[task] = other.task_prompts[task]
    combined.save_pretrained(out, rope_theta=rope_theta, max_length=max_length)
    log.info("combined adapters %s -> %s", combined.adapters, out)
    return combined


def calibration_texts() -> list[str]:
    """The texts an OpenVINO int8 graph is calibrated on: the bundled corpus ``CALIBRATION_CORPUS``
    (training text, never evaluated on)."""
    return list(load_corpus(CALIBRATION_CORPUS)["document"])


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = OmegaConf.from_dotlist(list(sys.argv[1:] if argv is None else argv))
    repo_id = check_repo_id(str(cfg.push_to_hub)) if cfg.get("push_to_hub") else None
    timeout = check_timeout(cfg.get("hub_timeout", HUB_TIMEOUT))
    backend, quantize = check_graph(str(cfg.get("backend", "torch")), str(cfg.get("quantize", "none")))
    inference = {"rope_theta": cfg.get("rope_theta"), "max_length": cfg.get("max_seq_length")}
    if cfg.get("upload"):
        out = Path(cfg.upload)
        if repo_id is None:
            raise SystemExit(f"upload={out} needs push_to_hub=<owner/name>")
        if not (out / JINA5_CONFIG).is_file():
            raise SystemExit(
                f"upload={out}: not an export folder (no {JINA5_CONFIG}); export it first: "
                f"python -m jina5.export run=<run dir> out={out}"
            )
    elif cfg.get("runs") is not None:
        if not cfg.get("out"):
            raise SystemExit("runs=[...] needs out=<dir>")
        if backend != "torch":
            raise SystemExit(
                f"backend={backend}: a graph holds one merged model; export each task with run=<run> task=<task>"
            )
        out = cfg.out
        combine_adapters(list(cfg.runs), out, **inference)
    elif cfg.get("run"):
        encoder = load_run_encoder(cfg.run)
        task = cfg.get("task")
        name = task or (encoder.adapters[0] if len(encoder.adapters) == 1 else "model")
        out = cfg.get("out") or Path(cfg.run) / "export" / name
        card = card_from_run(cfg.run) or CardInfo()
        if cfg.get("license"):
            card = replace(card, license=str(cfg.license), license_source="jina5-export license=")
        if cfg.get("results"):
            card = add_eval_metrics(card, cfg.results, encoder)
        export_sentence_transformers(encoder, task, out, card=card, model_id=repo_id, **inference)
        calibration = calibration_texts() if (backend, quantize) == ("openvino", "int8") else None
        export_graphs(out, backend, quantize, calibration)
    else:
        raise SystemExit(__doc__)
    if repo_id is not None:
        push_to_hub(out, repo_id, private=cfg.get("private"), timeout=timeout)


if __name__ == "__main__":
    main()
