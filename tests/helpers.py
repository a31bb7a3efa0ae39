"""Test helpers: compose the real Hydra config tree, and training configs on toy models."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from jina5.conf import CONF_DIR, compose
from omegaconf import DictConfig, open_dict

from jina5.model.adapters import DEFAULT_TASK_PROMPTS, lora_config
from jina5.model.encoder import Encoder
from jina5.model.tiny import tiny_model_and_tokenizer
from jina5.teacher.cache import Teacher
from jina5.training.module import EmbeddingModule
from jina5.training.objective import Objective

__all__ = [
    "CONF_DIR",
    "TOY",
    "TOY_EVAL",
    "CountingTeacher",
    "LoggingTeacher",
    "SMALL_DATA",
    "TINY",
    "TINY_TEACHER",
    "LossRecorder",
    "add_random_adapter",
    "compose",
    "run_cfg",
    "start_paused",
    "st_model_dir",
    "wait_paused",
]

SMALL_DATA = [
    "~data.datasets",
    "+data.datasets={bbc: {batch_size: 8, query_max_length: 16, document_max_length: 32, max_rows: 64},"
    "lee_background: {batch_size: 4, query_max_length: 16, document_max_length: 32, unlabeled: true, max_rows: 32}}",
    "data.dev_datasets=[bbc]",
    "data.dev_pairs=16",
    "++data.held_out=null",  # no leak guard over the suite's corpora (an experiment's stage1_distill has one)
]
TINY = {  # toy students (32-d)
    "bert": ["student.source=tiny:bert"],
    "qwen3": ["student=qwen3_0_6b", "student.source=tiny:qwen3", "student.max_length=48"],
    "eurobert": ["student=eurobert_210m", "student.source=tiny:eurobert", "student.max_length=48"],
}
TINY_TEACHER = ["teacher.source=tiny:mpnet", "objective.matryoshka.dims=[8,16,32]"]  # 32-d teacher


def run_cfg(tmp_path: Path, *overrides: str, student: str = "bert", small_data: bool = True) -> DictConfig:
    """A composed training config on toy models in ``tmp_path``, as ``python -m jina5.train`` would hand
    it to ``train`` (Hydra's runtime set, its node removed); ``small_data=False`` keeps the experiment's
    own data config."""
    cfg = compose(
        [
            *TINY[student],
            *TINY_TEACHER,
            *(SMALL_DATA if small_data else []),
            f"paths.output_root={tmp_path}",
            "trainer.enable_progress_bar=false",
            *overrides,
        ]
    )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "runs" / cfg.run_name)
        del cfg.hydra
    return cfg


def st_model_dir(
    path: Path,
    backbone: str = "tiny:bert",
    pooling: str = "mean",
    dense: tuple[int, int] | None = None,
    normalize: bool = True,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    max_seq_length: int = 40,
) -> Path:
    """A sentence-transformers model saved by sentence-transformers itself at ``path`` (as another library
    would leave it: ``modules.json``, no ``jina5_encoder.json``): ``backbone`` (``tiny:<type>``, random
    init, or a local model dir) -> Pooling(``pooling``) [-> Dense(in -> out, tanh)] [-> Normalize]."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling

    if backbone.startswith("tiny:"):
        model, tokenizer = tiny_model_and_tokenizer(backbone.removeprefix("tiny:"))
        backbone = str(path.parent / f"{path.name}-backbone")
        model.save_pretrained(backbone)
        tokenizer.save_pretrained(backbone)
    transformer = Transformer(backbone, max_seq_length=max_seq_length)
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling)]
    if dense is not None:
        torch.manual_seed(1)
        modules.append(Dense(*dense, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(Normalize())
    st = SentenceTransformer(
        modules=modules, prompts=prompts, default_prompt_name=default_prompt_name, device="cpu"
    )
    st.save(str(path))
    return path


class LossRecorder(L.Callback):
    """The training loss of every step: {global step after the step: loss}."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step] = float(outputs["loss"])


def add_random_adapter(enc: Encoder, task: str, seed: int) -> None:
    """A LoRA adapter whose B is random (a fresh one has B = 0 and changes nothing)."""
    enc.add_adapter(
        task, lora_config(enc.backbone.config.model_type, rank=4, alpha=8), DEFAULT_TASK_PROMPTS[task]
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if f"lora_B.{task}." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


# --- a fake results store (tables, sweeps) --------------------------------------------------------

MAIN_METRICS = {
    "retrieval": "ndcg@10",
    "sts": "spearman",
    "classification": "accuracy",
    "clustering": "v_measure",
}
# what every evaluated regime of a summary.json holds (a None means a column came out empty)
REGIME_KEYS = (
    "float/overall",
    "float/retrieval",
    "float/sts",
    "float/classification",
    "float/clustering",
    "binary/overall",
    "train_seconds",
)


# the held-out tasks of a fake run, with the number of test items of each synthetic item-backed run
ITEM_TASKS = (
    ("retrieval", "news", "", 80),
    ("retrieval", "chatterbot", "english", 60),
    ("retrieval", "chatterbot", "german", 40),
    ("sts", "lee_sts", "", 120),
    ("classification", "bbc", "", 100),
    ("clustering", "bbc", "", 120),
)


def precision_drops(binary_drop: float) -> dict[str, float]:
    """What a fake run loses at each precision: ``binary_drop`` in binary, half of it in int8."""
    return {"float32": 0.0, "int8": binary_drop / 2, "binary": binary_drop}


def main_records(
    task: str, dataset: str, lang: str, dim: int, precision: str, value: float, **extra
) -> list[dict]:
    """A task's main-metric record (with ``extra`` fields) and a non-main metric of value 0 (ignored)."""
    main = {
        "task": task,
        "dataset": dataset,
        "language": lang,
        "split": "test",
        "metric": MAIN_METRICS[task],
        "dim": dim,
        "precision": precision,
        "value": value,
        **extra,
    }
    return [main, {**main, "metric": "other", "value": 0.0, **{k: None for k in extra}}]


def task_records(
    base: float,
    binary_drop: float = 0.1,
    precisions: tuple[str, ...] = ("float32", "binary"),
    retrieval_shift: float = 0.0,
) -> list[dict]:
    """Held-out records: the tasks of :data:`ITEM_TASKS` (two retrieval data sets, one with two languages,
    one of each other type), dims 128 and 384. The main metric of task k is ``base + 0.01 k``
    (+ ``retrieval_shift`` for retrieval), minus 0.05 at dim 128, minus ``binary_drop`` in binary (int8:
    half of it); each comes with a non-main metric of value 0."""
    out = []
    drop = precision_drops(binary_drop)
    for k, (task, dataset, lang, _) in enumerate(ITEM_TASKS):
        for dim in (128, 384):
            for precision in precisions:
                value = base + 0.01 * k - (0.05 if dim == 128 else 0) - drop[precision]
                value += retrieval_shift if task == "retrieval" else 0.0
                out += main_records(task, dataset, lang, dim, precision, value)
    return out


def synthetic_items(task: str, dataset: str, language: str, n: int, quality: float, model: str):
    """Per-item scores of a made-up model of ``quality`` (about its main metric) on a made-up task.

    The items (texts, gold labels and scores, each item's difficulty) depend on the task only, so every
    model is scored on the same items; ``model`` (a name) seeds the model's own noise."""
    import zlib

    import numpy as np

    from jina5.eval.items import classification_items, clustering_items, retrieval_items, sts_items

    where = f"{task}/{dataset}/{language}"
    items = np.random.default_rng(zlib.crc32(where.encode()))
    noise = np.random.default_rng([zlib.crc32(model.encode()), zlib.crc32(where.encode())])
    texts = [f"{where}/{i}" for i in range(n)]
    if task == "retrieval":
        ndcg = np.clip(quality + items.uniform(-0.3, 0.3, n) + noise.normal(0, 0.1, n), 0.0, 1.0)
        return retrieval_items(ndcg, texts, [f"{where}/corpus"])
    if task == "sts":
        gold = items.integers(0, 5, n).astype(np.float64)  # tied scores, as human ratings
        predicted = quality * (gold - 2) / 2 + (1 - quality) * noise.normal(0, 1, n)
        return sts_items(predicted.astype(np.float32), gold, texts, texts[::-1])
    if task == "classification":
        labels = items.integers(0, 3, n)
        correct = items.uniform(0, 1, n)[None, :] + noise.normal(0, 0.2, (2, n)) < quality + 0.1
        return classification_items(correct, texts, labels)
    labels = np.arange(n) % 4
    kept = noise.random((2, n)) < quality
    return clustering_items(np.where(kept, labels, noise.integers(0, 4, (2, n))), texts, labels)


def item_records(
    store, run_id: str, quality: float, binary_drop: float, precisions: tuple[str, ...]
) -> list[dict]:
    """Held-out records of an item-backed run (the tasks of :data:`ITEM_TASKS`, dims 128 and 384): every
    main metric is recomputed from synthetic per-item scores (:func:`synthetic_items`, quality lowered
    by 0.05 at dim 128 and by ``binary_drop`` in binary, half of it in int8), written to the store's
    sidecar and named by the record's ``items``; each comes with a non-main metric of value 0."""
    import hashlib

    drop = precision_drops(binary_drop)
    out = []
    for task, dataset, lang, n in ITEM_TASKS:
        settings = [(dim, p) for dim in (128, 384) for p in precisions]
        by_setting = {
            (dim, p): synthetic_items(
                task,
                dataset,
                lang,
                n,
                quality - (0.05 if dim == 128 else 0.0) - drop[p],
                f"{run_id}/{dim}/{p}",
            )
            for dim, p in settings
        }
        key = hashlib.sha256(f"{task}/{dataset}/{lang}".encode()).hexdigest()
        ref = store.write_items(run_id, key, by_setting)
        for (dim, p), items in by_setting.items():
            value = round(items.metric(), 9)  # 9 decimals: the same digits on every machine
            out += main_records(task, dataset, lang, dim, p, value, items=ref)
    return out


def dev_record(task: str, metric: str, value: float, step: int | None = None) -> dict:
    """One dev-split record (``training`` wall time, ``dev_curve`` / ``training_curve`` points)."""
    record = {
        "task": task,
        "dataset": "dev",
        "language": "",
        "split": "dev",
        "metric": metric,
        "dim": None,
        "precision": "float32",
        "value": value,
    }
    return record if step is None else {**record, "step": step}


def write_fake_run(
    store,
    experiment: str,
    seed: int | None,
    base: float | None,
    *,
    run_id: str | None = None,
    binary_drop: float = 0.1,
    precisions: tuple[str, ...] = ("float32", "binary"),
    retrieval_shift: float = 0.0,
    train_seconds: float | None = None,
    curve: dict[int, float] | None = None,
    teacher_curve: dict[int, float] | None = None,
    items: bool = False,
) -> None:
    """Append one evaluated run to ``store`` (a ResultsStore): held-out records at ``base`` (none if
    None), its wall time, its dev nDCG@10 curve and the teacher's level on the same dev pairs. With
    ``items``, the held-out records are recomputed from per-item scores of quality ``base``
    (:func:`item_records`) instead of :func:`task_records`' values (and ``retrieval_shift`` is unused)."""
    run_id = run_id or f"{experiment}-seed{seed}"
    if base is None:
        records = []
    elif items:
        records = item_records(store, run_id, base, binary_drop, precisions)
    else:
        records = task_records(base, binary_drop, precisions, retrieval_shift)
    if train_seconds is not None:
        records.append(dev_record("training", "train_seconds", train_seconds))
    records += [dev_record("dev_curve", "ndcg@10", v, step) for step, v in (curve or {}).items()]
    records += [
        dev_record("dev_curve", "teacher_ndcg@10", v, step) for step, v in (teacher_curve or {}).items()
    ]
    store.append(records, {"run_id": run_id, "experiment": experiment, "seed": seed, "model": run_id})


def write_golden_store(path) -> None:
    """A store with every regime the sweeps of experiments/sweeps.yaml tabulate: baselines, one or two
    seeds per trained regime (some within each other's spread, some not), an older evaluation that the
    latest one replaces, int8 for a few, a regime best in retrieval but not overall (Table 5 ranks by
    retrieval), dev curves, and curve-only runs (figure 3). The default sweep's trained regimes are
    item-backed (:func:`item_records`: their tables get intervals); the others have no per-item scores,
    as an older store (`no CI (re-evaluate)`)."""
    from jina5.eval.store import ResultsStore

    store = ResultsStore(path)
    write_fake_run(store, "teacher", None, 0.70, binary_drop=0.2, precisions=("float32", "int8", "binary"))
    write_fake_run(store, "untrained_student", None, 0.20, binary_drop=0.05)
    write_fake_run(store, "combined", 0, 0.30, run_id="combined-old", train_seconds=50.0)  # replaced below
    evaluated = {  # experiment: (seed-0 base, seed-1 base or None, binary drop)
        "pure_distill": (0.52, None, 0.12),
        "pure_contrastive": (0.40, 0.42, 0.09),
        "combined": (0.50, 0.54, 0.10),
        "loss_ablation/nce_distill_gor": (0.531, 0.529, 0.05),
        "loss_ablation/nce_distill": (0.522, 0.541, 0.11),
        "loss_ablation/nce_gor": (0.515, None, 0.07),
        "loss_ablation/distill_gor": (0.49, 0.47, 0.06),
        "loss_ablation/nce": (0.50, None, 0.15),
        "loss_ablation/distill": (0.46, 0.48, 0.13),
        "binary/binary_aware": (0.505, 0.507, 0.02),
        "truncation/pure_distill_matryoshka": (0.51, None, 0.12),
        "truncation/pure_contrastive_matryoshka": (0.48, 0.46, 0.08),
        "truncation/combined_matryoshka": (0.535, None, 0.09),
        "stage1": (0.52, None, 0.12),
        "stage2_adapters": (0.55, None, 0.10),
    }
    for k, (experiment, (base0, base1, drop)) in enumerate(evaluated.items()):
        for seed, base in ((0, base0), (1, base1)):
            if base is None:
                continue
            precisions = ("float32", "int8", "binary") if k % 3 == 0 else ("float32", "binary")
            curve = (
                {9: 0.2 + 0.01 * k + 0.02 * seed, 19: 0.3 + 0.01 * k + 0.02 * seed} if k % 2 == 0 else None
            )
            write_fake_run(
                store,
                experiment,
                seed,
                base,
                binary_drop=drop,
                precisions=precisions,
                retrieval_shift=0.03 if experiment == "loss_ablation/nce_gor" else 0.0,
                train_seconds=60.0 + 3 * k + seed,
                curve=curve,
                items=experiment in ("pure_distill", "pure_contrastive", "combined"),
            )
    for k, experiment in enumerate(("objective_curve/score_distill",)):  # figure 3's curve-only run
        for seed in (0, 1):
            write_fake_run(
                store,
                experiment,
                seed,
                None,
                train_seconds=40.0 + k + seed,
                curve={step: 0.1 + 0.02 * step / 10 + 0.03 * k + 0.01 * seed for step in (9, 19, 29)},
                teacher_curve={step: 0.8 for step in (9, 19, 29)},
            )


@contextmanager
def gloo_group(rank: int, world: int, init_file: str, timeout_s: float = 300) -> Iterator[None]:
    """The gloo process group of a spawned test rank: a collective that waits longer than ``timeout_s``
    raises instead of hanging the test run, and the ranks leave together (a barrier, then the group is
    destroyed), so no rank tears down while its peer is still in a collective."""
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout_s),
    )
    try:
        yield
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


# The toy sweep of the sweep and launcher tests: tiny models, one small data set, 2 steps.
TOY = [
    "student.source=tiny:bert",
    "teacher.source=tiny:mpnet",
    "~data.datasets",
    "+data.datasets={bbc: {batch_size: 8, query_max_length: 16, document_max_length: 32, max_rows: 48}}",
    "data.dev_datasets=[bbc]",
    "data.dev_pairs=16",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.enable_progress_bar=false",
    "objective.matryoshka.dims=[8,16,32]",
    "++data.held_out=null",
]
TOY_EVAL = [
    "--eval",
    "eval=smoke",
    "--eval",
    "baselines.teacher.source=tiny:mpnet",
    "--eval",
    "baselines.untrained_student.source=tiny:bert",
]


class CountingTeacher(Teacher):
    """A tiny teacher that counts how many texts it embedded."""

    def __init__(self, seed=0, hidden=32):
        model, tok = tiny_model_and_tokenizer("bert", hidden=hidden, seed=seed)
        super().__init__(encoder=Encoder(model, tokenizer=tok), batch_size=4)
        self.calls = 0

    def embed(self, texts, instruction=""):
        self.calls += len(texts)
        return super().embed(texts, instruction)


class LoggingTeacher(Teacher):
    """A ``Teacher`` (any teacher config: ``teacher._target_=helpers.LoggingTeacher``) for commands run as
    subprocesses: each embed call appends ``<pid> <texts>`` to the file ``$JINA5_TEST_EMBED_LOG``, then,
    if ``$JINA5_TEST_EMBED_GATE`` names a file, waits until that file exists (a test holds the process
    inside its first chunk)."""

    def embed(self, texts, instruction=""):
        with open(os.environ["JINA5_TEST_EMBED_LOG"], "a") as log:
            log.write(f"{os.getpid()} {len(texts)}\n")
        gate = os.environ.get("JINA5_TEST_EMBED_GATE")
        while gate and not os.path.exists(gate):
            time.sleep(0.05)
        return super().embed(texts, instruction)


def toy_module(objective_of: Callable[[Encoder], Objective], **module_kwargs) -> EmbeddingModule:
    """An ``EmbeddingModule`` on a tiny seeded 2-layer BERT (dropout 0.1) with query/document prompts,
    SGD, gathering across devices; ``objective_of(encoder)`` builds its objective, ``module_kwargs`` the
    rest (``projection_warm_start``, ``grad_cache``, ...)."""
    model, tokenizer = tiny_model_and_tokenizer("bert", layers=2)
    encoder = Encoder(model, tokenizer=tokenizer, prompts={"query": "Query: ", "document": "Document: "})
    settings = {"weight_decay_exclude_1d": True, "base_reference_dropout": False, **module_kwargs}
    return EmbeddingModule(
        encoder, objective_of(encoder), optimizer=torch.optim.SGD, gather_across_devices=True, **settings
    )


PAUSE_CHILD = Path(__file__).resolve().parent / "e2e" / "pause_child.py"


def start_paused(root: Path, target: str, n: int, module: str, *args: str, **env: str) -> subprocess.Popen:
    """``python -m module args`` as a real process that pauses after the ``n``-th call of ``target``
    (``module:function`` or ``module:Class.method``; tests/e2e/pause_child.py), with ``env`` added."""
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(PAUSE_CHILD), str(root), target, str(n), module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )


def wait_paused(child: subprocess.Popen, root: Path, timeout: float = 300) -> None:
    """Wait until ``child`` wrote ``root/paused`` (tests/e2e/train_child.py, tests/e2e/pause_child.py)."""
    deadline = time.monotonic() + timeout
    while not (root / "paused").exists():
        if child.poll() is not None:
            raise AssertionError(f"the child process exited ({child.returncode}):\n{child.stdout.read()}")
        assert time.monotonic() < deadline, "the child process never reached its pause point"
        time.sleep(0.1)
