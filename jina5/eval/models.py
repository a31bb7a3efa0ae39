"""What ``model=`` names in ``python -m jina5.evaluate`` and ``python -m jina5.mteb``: an encoder plus
the run identity its records are stored under.

``model`` is resolved in this order: a key of ``baselines``; a run dir (holds ``encoder/``; its
``config.yaml`` gives experiment_name and seed); an encoder dir: ours (``jina5_encoder.json``), a
sentence-transformers model saved by another library (``modules.json``: read as sentence-transformers
reads it, ``jina5.model.st_saved``; kind ``sentence_transformers``) or a plain transformers model
(``config.json``: ``pooling``); a path-like spec (``jina5.assets.is_path_like``: ``/nope``, ``./x``,
``outputs/runs/typo``) that is neither fails at once ("no such run or encoder directory", no hub lookup);
otherwise a model source (bundled name, ``hub:<id>``, hub id, ``tiny:bert``): read as saved when it has
``modules.json``, else an ``Encoder`` with ``pooling``.

``backend=onnx|openvino`` (with ``quantize=none|int8``) evaluates the inference graph that
``jina5-export ... backend=...`` wrote into the exported directory ``model`` instead of its torch weights
(``jina5.model.graph_runtime``): on the CPU, fp32 (OpenVINO also bf16, its inference precision hint), the
records filed under ``<dir name>-<backend>[-int8]`` and keyed by the graph's digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from jina5.assets import is_path_like, resolve_model
from jina5.model.encoder import Encoder
from jina5.model.graph_export import check_graph
from jina5.model.graph_runtime import graph_file, load_graph_encoder
from jina5.model.io import JINA5_CONFIG
from jina5.model.placement import resolve_device
from jina5.model.precision import FP32, resolve_precision
from jina5.model.settings import positive_int
from jina5.model.st_saved import ST_MODULES, SavedSentenceTransformer, st_file


@dataclass
class LoadedModel:
    encoder: Encoder | SavedSentenceTransformer
    name: str  # the `model` field of the records
    kind: str  # baseline | run | encoder_dir | sentence_transformers | source
    experiment: str | None
    seed: int | None
    train_config: dict | None = None
    graph: dict | None = None  # {backend, quantize, file} of an exported graph; None: torch weights


def run_label(train_cfg: DictConfig) -> str:
    """The experiment a training run is reported as: its ``run_name`` without ``-seed<seed>``, so a run
    given its own name (``combined-lr3e-4-seed0``) is not merged with ``combined``; else ``experiment_name``."""
    name, suffix = train_cfg.get("run_name"), f"-seed{train_cfg.get('seed')}"
    if not name:
        return train_cfg.get("experiment_name")
    return name[: -len(suffix)] if name.endswith(suffix) else name


def load_model(cfg: DictConfig) -> LoadedModel:
    """Resolve ``cfg.model`` (module docstring) into an encoder plus its run identity, on ``cfg.device``
    (``auto``: cuda when available, else cpu; ``jina5.model.placement.resolve_device``) with
    ``cfg.precision`` resolved for that device."""
    if cfg.get("max_length") is not None:  # before anything loads
        positive_int(
            cfg.max_length, "max_length", "tokens per text, instead of the model's own; null keeps it"
        )
    spec = str(cfg.model)
    baselines = cfg.get("baselines") or {}
    path = Path(spec).expanduser()
    backend, quantize = str(cfg.get("backend") or "torch"), str(cfg.get("quantize") or "none")
    if backend != "torch" or quantize != "none":
        loaded = load_graph_model(path, backend, quantize, cfg)
    elif spec in baselines:
        kwargs = OmegaConf.to_container(baselines[spec], resolve=True)
        loaded = LoadedModel(Encoder(**kwargs), spec, "baseline", spec, None)
    elif path.is_dir() and (path / "encoder").is_dir():
        train_cfg = OmegaConf.load(path / "config.yaml") if (path / "config.yaml").exists() else None
        train_dict = OmegaConf.to_container(train_cfg, resolve=False) if train_cfg is not None else None
        seed = train_cfg.get("seed") if train_cfg is not None else None
        experiment = run_label(train_cfg) if train_cfg is not None else None
        loaded = LoadedModel(
            Encoder.from_pretrained(path / "encoder"),
            str(path),
            "run",
            experiment or path.name,
            seed,
            train_dict,
        )
    elif path.is_dir() and (path / JINA5_CONFIG).exists():  # ours: carries its pooling, prompts, length
        loaded = LoadedModel(Encoder.from_pretrained(path), str(path), "encoder_dir", path.name, None)
    elif path.is_dir() and (path / ST_MODULES).exists():
        loaded = LoadedModel(
            SavedSentenceTransformer.load(str(path)), str(path), "sentence_transformers", path.name, None
        )
    elif path.is_dir() and (path / "config.json").exists():  # a plain transformers model: cfg.pooling
        loaded = LoadedModel(
            Encoder.from_pretrained(path, pooling=cfg.pooling), str(path), "encoder_dir", path.name, None
        )
    elif path.exists():
        raise FileNotFoundError(
            f"model={spec!r} is a path but neither a run dir (with encoder/) nor an encoder dir "
            f"(with {JINA5_CONFIG}, {ST_MODULES} or config.json)"
        )
    elif is_path_like(spec):
        raise FileNotFoundError(
            f"model={spec}: no such run or encoder directory ({path.absolute()}); "
            f"or name a baseline: {', '.join(sorted(baselines))}"
        )
    elif not spec.startswith("tiny:") and st_file(resolve_model(spec), ST_MODULES):
        model = SavedSentenceTransformer.load(resolve_model(spec))
        loaded = LoadedModel(model, spec, "sentence_transformers", spec, None)
    else:
        loaded = LoadedModel(Encoder(spec, pooling=cfg.pooling), spec, "source", spec, None)
    if cfg.get("max_length") is not None:
        loaded.encoder.max_length = cfg.max_length
    if cfg.get("prompts") is not None:
        loaded.encoder.prompts = dict(OmegaConf.to_container(cfg.prompts, resolve=True))
    if loaded.graph is not None:
        return loaded
    device = resolve_device(cfg.get("device", "auto"))  # conf/eval.yaml: auto = cuda when available
    if loaded.encoder.device != device:
        loaded.encoder.to(device)
    loaded.encoder.compute_precision = resolve_precision(cfg.precision, device.type)
    return loaded


def load_graph_model(path: Path, backend: str, quantize: str, cfg: DictConfig) -> LoadedModel:
    """The exported directory ``path`` computing with its ``backend`` / ``quantize`` graph (module
    docstring), on the CPU; ``precision=auto`` is fp32 for onnx (onnxruntime has no bf16 path)."""
    check_graph(backend, quantize)
    if not path.is_dir():
        raise FileNotFoundError(
            f"model={path}: backend={backend} needs the directory jina5-export run=... out={path} "
            f"backend={backend} wrote"
        )
    if str(cfg.get("device", "auto")) not in ("auto", "cpu"):
        raise ValueError(f"device={cfg.device}: backend={backend} computes on the CPU (device=cpu or auto)")
    precision = resolve_precision(cfg.precision, "cpu")
    if backend == "onnx" and cfg.precision == "auto":
        precision = FP32
    encoder = load_graph_encoder(path, backend, quantize, precision)
    experiment = f"{path.name}-{backend}" + ("-int8" if quantize == "int8" else "")
    graph = {"backend": backend, "quantize": quantize, "file": graph_file(backend, quantize)}
    return LoadedModel(encoder, str(path), "graph", experiment, None, graph=graph)
