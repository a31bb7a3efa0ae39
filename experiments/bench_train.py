"""Training throughput (pairs/s): jina5's training step against sentence-transformers' trainer, same work.

Both contenders train the embedded-default student (all-MiniLM-L6-v2 pruned to layers 0, 2, 4,
``conf/student/minilm_l6_pruned3.yaml``) from the same weights on the same batches, in one process,
alternating rounds so that machine noise hits every contender alike; each round trains from the
initial weights with a fresh optimizer, ``--warmup`` untimed steps then ``--n / --batch-size`` timed ones. The
table gives the median over rounds.

    python experiments/bench_train.py [--objective infonce|distill|both] [--rounds 3] [--n 320] [--out f.json]
    python experiments/bench_train.py --smoke          # tiny random models, seconds (code path only)

Same work on both sides:

- texts: the ``news`` train split of the real ``PairDataModule`` (the stage-1 spec: 500 rows, query
  32 / document 64 tokens, batch 32), batches in the order of its own sampler; sentence-transformers
  gets the same rows in the same order (a sequential batch sampler over a dataset laid out batch by
  batch). Checked, not assumed: a hook on each backbone records every text's token ids in the order
  the backbone sees them, and the run reports whether both sides saw the same sequence.
- lengths: sentence-transformers has one ``max_seq_length`` for every column; it is set to the
  document length (64), and every query is cut beforehand (at a whole word, for both contenders) so
  that it fits in 32 tokens with its prefix. Neither side's truncation then changes a query, and both
  cut documents at 64. The teacher vectors stay those of the full query, as in training.
- prefixes: our ``Query: `` / ``Document: `` prompts; sentence-transformers gets them as the training
  arguments' per-column ``prompts`` (mean pooling over the prefix too, as ours).
- optimisation: AdamW (``torch.optim.AdamW`` on both sides: ``optim="adamw_torch"``), the same lr,
  betas and weight decay 0.01 (ours and HF's both exempt biases and norms), constant schedule, no
  warm-up, gradient clipping at norm 1, dropout on (train mode).
- objectives (``--objective``):
  ``infonce``: ours ``jina5.losses.InfoNCE`` (tau 0.02, in-batch negatives) through the objective;
  theirs ``MultipleNegativesRankingLoss(scale=1/0.02)`` (cosine, query -> document). Without
  in-batch duplicates (our duplicate masking drops nothing) they are the same loss.
  ``distill``: ours ``jina5.losses.EmbeddingDistillation`` (psi: Linear 384 -> 768 on the student),
  L = sum_i sum_{z in q, d} (1 - cos(psi(s_z,i), t_z,i)); theirs ``EmbedDistillLoss(distance_metric=
  "cosine", projection_dim=768)`` on the same cached teacher vectors (label (B, 2, 768): per-column
  targets), L_st = mean over the 2 columns of mean_i (1 - cos(P s, t)), so L = 2 B L_st when P = psi
  (its projection is initialised to our psi). Teacher vectors: the real ``TeacherCache``
  (all-mpnet-base-v2, fp32, 64 tokens; filled first when missing).
- ours: the real ``EmbeddingModule`` with its objective, optimizer, scheduler and the datamodule's
  collator, run by a Lightning ``Trainer`` (``trainer.fit`` with ``max_steps``): the path users run.
  ``jina5.train.build`` assembles it from the composed config (``conf/train.yaml`` with the deltas
  below); each round gets a fresh Trainer from the ``trainer`` config node. ``precision=fp32`` and
  ``precision=auto`` are what the top-level ``precision`` key changes in training, the Trainer's
  ``precision`` (``32-true``, or ``bf16-mixed`` on a CPU with AMX / AVX512-BF16, ``jina5.model.precision``).
- theirs: ``SentenceTransformerTrainer`` on the student exported by ``Encoder.save_pretrained`` (the
  same backbone, mean pooling, normalisation), ``use_cpu=True``, at its default fp32 and with
  ``bf16=True`` (the HF Trainer's CPU autocast to bfloat16 through accelerate).

Timing: from the start of step ``warmup`` (its batch already collated) to the end of the last step,
by a callback on each side; the token hook also records whether bf16 autocast was on in every
forward (the table's ``autocast`` column: all / none) (Lightning ``on_train_batch_start/end``, HF ``on_step_begin/end``); this
includes collation of the later batches, optimizer steps and each trainer's per-step bookkeeping, and
excludes model loading and trainer set-up. pairs/s = steps x batch / seconds.

Ratios (``ratio jina5 / sentence-transformers: X``): jina5 at ``precision=auto`` (what a user of this
CPU opts into) over sentence-transformers at its default fp32, and over sentence-transformers with
``bf16=True``; both at fp32 too. Per objective and over both (timed steps over their summed seconds).

Before timing, the first batch's loss is computed by both (eval mode, same weights) and reported:
the two InfoNCE values must agree, and ours for distillation must equal 2 B times theirs.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import datasets
import lightning as L
import torch
import transformers
from bench_cli import bench_args
from bench_contender import Contender, LightningWindow, TokenLog
from bench_train_st import st_dataset, st_loss, st_student, st_trainer, train_st
from bench_train_table import print_table, ratios
from hydra.utils import instantiate
from jina5.conf import compose
from omegaconf import DictConfig
from sentence_transformers import SentenceTransformer

from jina5.data.datamodule import PairDataModule
from jina5.model.encoder import Encoder
from jina5.model.precision import cpu_bf16_flags, lightning_precision
from jina5.train import build
from jina5.training.module import EmbeddingModule

OBJECTIVES = ("infonce", "distill")
DATASET = "news"
SMOKE = ["student.source=tiny:bert", "student.keep_layers=null", "teacher.source=tiny:mpnet"]


# ---------------------------------------------------------------------------------------------- ours
def compose_ours(objective: str, args: argparse.Namespace, out_dir: str) -> DictConfig:
    """The training config: the embedded default with one loss at weight 1 and only the ``news`` data.

    Deltas: the news train split alone (its stage-1 spec, at ``--batch-size`` and ``--max-length``
    document tokens), no dev set, no projection warm start (the other trainer has none; it runs before
    step 0 anyway), a constant lr, the teacher's vectors in fp32 (one cache for every contender; no
    teacher for InfoNCE) and a run directory under ``out_dir``."""
    smoke = SMOKE if args.smoke else []
    others = [name for name in compose(smoke).data.datasets if name != DATASET]
    return compose(
        [
            "teacher.precision=fp32",
            f"use_teacher={objective == 'distill'}",
            "scheduler=constant",
            f"optimizer.lr={args.lr}",
            "module.projection_warm_start=0",
            "data.dev_datasets=[]",
            *[f"data.datasets.{name}=null" for name in others],
            f"data.datasets.{DATASET}.batch_size={args.batch_size}",
            f"data.datasets.{DATASET}.document_max_length={args.max_length}",
            "~objective.weights",
            f"+objective.weights={{{objective}: 1.0}}",
            f"paths.output_dir={out_dir}",
            *smoke,
        ]
    )


def fit_queries(encoder: Encoder, texts: Sequence[str], max_length: int) -> list[str]:
    """Each query without its last words until it fits in ``max_length`` tokens with the query prefix,
    so truncation at any length >= ``max_length`` leaves it unchanged."""
    out = []
    for text in texts:
        while len(encoder.tokenize_ids([text], "query", max_length=10**6)[0]) > max_length:
            shorter = text.rsplit(maxsplit=1)[0]
            text = shorter if shorter != text else text[: len(text) // 2]
        out.append(text)
    return out


def prepare_data(datamodule: PairDataModule) -> None:
    """Load the table (teacher vectors from the cache) and cut its queries (see ``fit_queries``)."""
    datamodule.setup("fit")
    for table in datamodule.tables:
        table.queries = fit_queries(datamodule.encoder, table.queries, table.spec.query_max_length)


def batch_keys(datamodule: PairDataModule, n: int) -> list[list[tuple[int, int]]]:
    """The first ``n`` batches of the datamodule's own sampler: [(dataset, row)] each."""
    stream = iter(datamodule.train_dataloader().batch_sampler)
    return [next(stream) for _ in range(n)]


def train_ours(
    cfg: DictConfig,
    module: EmbeddingModule,
    datamodule: PairDataModule,
    init: dict,
    contender: Contender,
    total: int,
    warmup: int,
) -> float:
    """One round: the module from ``init``, a fresh Trainer (``cfg.trainer`` at the contender's
    precision), ``total`` steps; the timed window's seconds."""
    module.load_state_dict(init)
    contender.trainer_precision = lightning_precision(contender.precision, "cpu")
    window = LightningWindow(warmup)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        precision=contender.trainer_precision,
        max_steps=total,
        limit_val_batches=0,
        callbacks=[window],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    log = TokenLog(module.encoder.backbone)
    trainer.fit(module, datamodule=datamodule)
    log.close(contender)
    return window.end - window.start


# ------------------------------------------------------------------------------------------ checks
@torch.no_grad()
def first_batch_losses(
    objective: str,
    module: EmbeddingModule,
    datamodule: PairDataModule,
    model: SentenceTransformer,
    dataset: datasets.Dataset,
    cfg: DictConfig,
    batch_size: int,
    out_dir: str,
) -> dict[str, float]:
    """Both losses on the first batch (eval mode, the initial weights), each through its own path:
    our collator + module + objective; their collator + trainer.compute_loss."""
    module.encoder.eval()
    batch = next(iter(datamodule.train_dataloader()))
    ours, _ = module.objective(module.embedding_batch(batch))
    model.eval()
    trainer = st_trainer(
        model, st_loss(model, objective, module), dataset, cfg, False, 1, batch_size, out_dir
    )
    inputs = next(iter(trainer.get_train_dataloader()))
    theirs = trainer.compute_loss(model, inputs)
    out = {"jina5": float(ours), "sentence_transformers": float(theirs)}
    if objective == "distill":
        out["sentence_transformers_x_2B"] = float(theirs) * 2 * batch_size
    return out


# ------------------------------------------------------------------------------------------- main
def bench_objective(objective: str, args: argparse.Namespace, tmp: Path) -> dict:
    """Every contender's rounds on one objective, alternating; the objective's JSON record."""
    cfg = compose_ours(objective, args, str(tmp / f"run-{objective}"))
    spec = cfg.data.datasets[DATASET]
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule, _ = build(cfg)
    prepare_data(datamodule)
    total = args.warmup + args.steps
    keys = batch_keys(datamodule, total)
    dataset = st_dataset(datamodule, keys, objective)
    exported = module.encoder.save_pretrained(tmp / f"student-{objective}")
    model = st_student(exported, spec.document_max_length)
    init_ours = {k: v.clone() for k, v in module.state_dict().items()}
    check = first_batch_losses(
        objective, module, datamodule, model, dataset, cfg, args.batch_size, str(tmp / "st")
    )
    contenders = [
        Contender("jina5", "fp32"),
        Contender("jina5", "auto"),
        Contender("sentence-transformers", "fp32"),
        Contender("sentence-transformers", "bf16"),
    ]
    for r in range(args.rounds):
        for c in contenders:
            if c.name == "jina5":
                seconds = train_ours(cfg, module, datamodule, init_ours, c, total, args.warmup)
            else:
                seconds = train_st(
                    exported, spec.document_max_length, objective, module, dataset, cfg, c, total,
                    args.warmup, args.batch_size, str(tmp / "st"),
                )  # fmt: skip
            c.seconds.append(seconds)
            print(
                f"  round {r + 1} {objective:8s} {c.name:21s} {c.precision:5s} {seconds:7.2f} s", flush=True
            )
    pairs = args.steps * args.batch_size
    return {
        "objective": objective,
        "first_batch_loss": check,
        "same_batches": len({(c.tokens, c.texts) for c in contenders}) == 1,
        "texts_per_round": {f"{c.name}/{c.precision}": c.texts for c in contenders},
        "contenders": [
            {
                "contender": c.name,
                "precision": c.precision,
                "trainer_precision": c.trainer_precision,
                "bf16_autocast": {frozenset({True}): "all", frozenset({False}): "none"}.get(
                    frozenset(c.autocast), "mixed"
                ),
                "pairs_per_s": c.pairs_per_s(pairs),
                "s_per_step": statistics.median(c.seconds) / args.steps,
                "seconds": c.seconds,
            }
            for c in contenders
        ],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = bench_args(__doc__, n=320, rounds=3, batch_size=32, max_length=64)
    ap.add_argument("--objective", choices=(*OBJECTIVES, "both"), default="both")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them, every round")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW lr of both trainers")
    ap.add_argument("--smoke", action="store_true", help="tiny random student and teacher (code path only)")
    ap.add_argument("--out", type=Path, help="write the JSON record here")
    args = ap.parse_args(argv)
    args.steps = max(1, args.n // args.batch_size)  # --n: the timed pairs of a round
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the table and ratios (and the JSON record, also to ``--out``)."""
    args = parse_args(argv)
    transformers.logging.set_verbosity_error()  # the exported student's unused pooler, reported as missing
    for name in ("lightning", "lightning.pytorch"):  # "GPU available: False" and friends, every round
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    objectives = OBJECTIVES if args.objective == "both" else (args.objective,)
    with tempfile.TemporaryDirectory() as tmp:
        records = [bench_objective(o, args, Path(tmp)) for o in objectives]
    result = {
        "student": "tiny:bert" if args.smoke else "minilm_l6_pruned3",
        "dataset": DATASET,
        "batch_size": args.batch_size,
        "query_max_length": 32,
        "document_max_length": args.max_length,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16_flags": list(cpu_bf16_flags()),
        "objectives": [{**r, "ratio": ratios([r])} for r in records],
        "ratio": ratios(records),
    }
    print_table(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
