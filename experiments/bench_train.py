"""Training throughput (pairs/s): jina5's training step against sentence-transformers' trainer, same work.

Both contenders train the embedded-default student (all-MiniLM-L6-v2 pruned to layers 0, 2, 4,
``conf/student/minilm_l6_pruned3.yaml``) from the same weights on the same batches, in one process,
alternating rounds so that machine noise hits every contender alike; each round trains from the
initial weights with a fresh optimizer, ``--warmup`` untimed steps then ``--n / --batch-size`` timed ones. The
table gives the median over rounds.

    python experiments/bench_train.py [--objective infonce|distill|both] [--rounds 3] [--n 320] [--out f.json]
        [--mix-steps 24] [--threads N]
    python experiments/bench_train.py --smoke          # tiny random models, a few minutes (code path only)

Besides the contest with sentence-transformers it times our CPU speed levers
(``experiments/bench_train_levers.py``): today's path (every lever off), each lever alone, all of them
(the shipped defaults), each as a contender in the same alternating rounds; and our step on the default
mix that ``make ablate`` trains on, today's path against all levers (``--mix-steps``; 0 skips it; a cold
teacher cache is filled first, as training would).

Same work on both sides:

- texts: the ``news`` train split of the real ``PairDataModule`` (the stage-1 spec: 500 rows, query
  32 / document 64 tokens, batch 32), batches in the order of its own sampler; sentence-transformers
  gets the same rows in the same order (a sequential batch sampler over a dataset laid out batch by
  batch). Checked, not assumed: a hook on each side's encoder (ours: the ``Encoder``, before any
  packing; theirs: its ``Transformer`` module) records every text's token ids in the order it sees them,
  and the run reports whether every contender saw the same sequence.
- lengths: sentence-transformers has one ``max_seq_length`` for every column; it is set to the
  document length (64), and every query is cut beforehand (at a whole word, for both contenders) so
  that it fits in 32 tokens with its prefix. Neither side's truncation then changes a query, and both
  cut documents at 64. The teacher vectors stay those of the full query, as in training.
- prefixes: our ``Query: `` / ``Document: `` prompts; sentence-transformers gets them as the training
  arguments' per-column ``prompts`` (mean pooling over the prefix too, as ours).
- optimisation: AdamW (``torch.optim.AdamW`` on both sides: ours fused where ``optimizer.fused`` is
  null, theirs ``optim="adamw_torch"``, torch's default), the same lr,
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
by a callback on each side (Lightning ``on_train_batch_start/end``, HF ``on_step_begin/end``); this
includes collation of the later batches, optimizer steps and each trainer's per-step bookkeeping, and
excludes model loading and trainer set-up. pairs/s = steps x batch / seconds. The same window also gives
the process's CPU seconds (all threads; steadier than wall time where other jobs share the machine, as
are ratios from them) and its minor page faults per step. The token hook also records whether bf16
autocast was on in every forward (the table's ``autocast`` column: all / none).

Levers: glibc's allocator cannot be switched back once a round kept freed memory, so the rounds of
today's path and sentence-transformers' run with the values today's path settles at
(``bench_train_levers.glibc_as_today``). CPU utilisation: the matmul FLOPs of forward and backward on
the real (non-pad) tokens of the timed steps (``bench_train_levers.step_flops``) over each contender's
seconds, against a bf16 matmul of the step's shape timed in the same rounds.

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
from dataclasses import dataclass
from pathlib import Path

import datasets
import lightning as L
import torch
import transformers
from bench_cli import bench_args
from bench_contender import Contender, LightningWindow, TokenLog, Window
from bench_train_levers import ALL_NAME, TODAY_NAME, glibc_as_today, matmul_ceiling, step_flops, variants
from bench_train_st import st_dataset, st_loss, st_student, st_trainer, train_st
from bench_train_table import lever_table, print_table, ratios
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
def compose_ours(
    objective: str, args: argparse.Namespace, out_dir: str, overrides: Sequence[str] = ()
) -> DictConfig:
    """The training config: the embedded default with one loss at weight 1 and only the ``news`` data,
    then ``overrides`` (a speed-lever variant).

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
            *overrides,
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
) -> Window:
    """One round: the module from ``init``, a fresh Trainer (``cfg.trainer`` at the contender's
    precision), ``total`` steps; the timed window. glibc's allocator as today's path leaves it, unless
    the module keeps freed memory (its setup sets that)."""
    module.load_state_dict(init)
    if not module.keep_freed_memory:
        glibc_as_today()
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
    log = TokenLog(module.encoder)
    trainer.fit(module, datamodule=datamodule)
    log.close(contender)
    return window


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
@dataclass
class Ours:
    """One speed-lever variant of ours: its config, module, data and initial weights."""

    cfg: DictConfig
    module: EmbeddingModule
    datamodule: PairDataModule
    init: dict


def build_ours(objective: str, args: argparse.Namespace, out_dir: Path, overrides: Sequence[str]) -> Ours:
    """The module and data of one variant, from the seed (the same weights and psi for every variant)."""
    cfg = compose_ours(objective, args, str(out_dir), overrides)
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule, _ = build(cfg)
    prepare_data(datamodule)
    return Ours(cfg, module, datamodule, {k: v.clone() for k, v in module.state_dict().items()})


def contender_record(c: Contender, steps: int, batch_size: int) -> dict:
    return {
        "contender": c.name,
        "precision": c.precision,
        "variant": c.variant,
        "trainer_precision": c.trainer_precision,
        "bf16_autocast": {frozenset({True}): "all", frozenset({False}): "none"}.get(
            frozenset(c.autocast), "mixed"
        ),
        "pairs_per_s": c.pairs_per_s(steps * batch_size),
        "s_per_step": statistics.median(c.seconds) / steps,
        "cpu_s_per_step": statistics.median(c.cpu_seconds) / steps,
        "faults_per_step": statistics.median(c.faults) / steps,
        "seconds": c.seconds,
    }


def bench_objective(objective: str, args: argparse.Namespace, tmp: Path) -> dict:
    """Every contender's rounds on one objective, alternating; the objective's JSON record."""
    ours = {
        name: build_ours(objective, args, tmp / f"run-{objective}-{i}", overrides)
        for i, (name, overrides) in enumerate(variants().items())
    }
    shipped = ours[ALL_NAME]
    spec = shipped.cfg.data.datasets[DATASET]
    total = args.warmup + args.steps
    keys = batch_keys(shipped.datamodule, total)
    dataset = st_dataset(shipped.datamodule, keys, objective)
    exported = shipped.module.encoder.save_pretrained(tmp / f"student-{objective}")
    model = st_student(exported, spec.document_max_length)
    check = first_batch_losses(
        objective, shipped.module, shipped.datamodule, model, dataset, shipped.cfg, args.batch_size,
        str(tmp / "st"),
    )  # fmt: skip
    collate = shipped.datamodule.train_dataloader().collate_fn
    timed = [collate(k) for k in keys[args.warmup :]]
    backbone_config = shipped.module.encoder.backbone.config
    flops = step_flops(timed, backbone_config)
    shape = timed[0]["document"]["input_ids"].shape
    contenders = [
        Contender("jina5", "fp32", ALL_NAME),
        Contender("jina5", "auto", ALL_NAME),
        *[Contender("jina5", "auto", name) for name in ours if name != ALL_NAME],
        Contender("sentence-transformers", "fp32"),
        Contender("sentence-transformers", "bf16"),
    ]
    ceilings = []
    for r in range(args.rounds):
        for c in contenders:
            if c.name == "jina5":
                v = ours[c.variant]
                window = train_ours(v.cfg, v.module, v.datamodule, v.init, c, total, args.warmup)
            else:
                glibc_as_today()
                window = train_st(
                    exported, spec.document_max_length, objective, shipped.module, dataset, shipped.cfg, c,
                    total, args.warmup, args.batch_size, str(tmp / "st"),
                )  # fmt: skip
            c.record(window)
            print(
                f"  round {r + 1} {objective:8s} {c.name:21s} {c.precision:5s} {c.variant:17s} "
                f"{c.seconds[-1]:7.2f} s",
                flush=True,
            )
        ceilings.append(matmul_ceiling(shape[0] * shape[1], backbone_config))
    records = [contender_record(c, args.steps, args.batch_size) for c in contenders]
    for rec, c in zip(records, contenders, strict=True):
        rec["gflops_per_s"] = flops / statistics.median(c.seconds) / 1e9
        rec["gflops_per_cpu_s"] = flops / statistics.median(c.cpu_seconds) / 1e9
    return {
        "objective": objective,
        "first_batch_loss": check,
        "same_batches": len({(c.tokens, c.texts) for c in contenders}) == 1,
        "texts_per_round": {f"{c.name}/{c.precision}/{c.variant}": c.texts for c in contenders},
        "matmul_gflop_per_step": flops / args.steps / 1e9,
        "bf16_matmul_ceiling_gflops_per_s": statistics.median(c[0] for c in ceilings),
        "bf16_matmul_ceiling_gflops_per_cpu_s": statistics.median(c[1] for c in ceilings),
        "ceiling_shape": [
            shape[0] * shape[1],
            backbone_config.hidden_size,
            backbone_config.intermediate_size,
        ],
        "contenders": records,
    }


def bench_mix(args: argparse.Namespace, tmp: Path) -> dict:
    """Our step on the default mix, the one ``make ablate`` trains on (``experiment=ablation/combined``:
    ``data=stage1_distill``, the combined objective), today's path against all levers, in alternating
    rounds of ``--mix-warmup`` untimed then ``--mix-steps`` timed steps from the same weights; per step
    kind (pair batches, texts-only batches) too. Deltas: no dev set, no projection warm start."""
    runs = {}
    for i, name in enumerate((TODAY_NAME, ALL_NAME)):
        cfg = compose(
            [
                "experiment=ablation/combined",
                "module.projection_warm_start=0",
                "data.dev_datasets=[]",
                f"paths.output_dir={tmp / f'mix-{i}'}",
                *(SMOKE + ["data.max_rows_cap=128"] if args.smoke else []),
                *variants()[name],
            ]
        )
        L.seed_everything(cfg.seed, workers=True)
        module, datamodule, _ = build(cfg)
        datamodule.setup("fit")
        runs[name] = Ours(cfg, module, datamodule, {k: v.clone() for k, v in module.state_dict().items()})
    total = args.mix_warmup + args.mix_steps
    keys = batch_keys(runs[ALL_NAME].datamodule, total)
    tables = runs[ALL_NAME].datamodule.tables
    texts_only = [tables[k[0][0]].texts_only for k in keys[args.mix_warmup :]]
    contenders = [Contender("jina5", "auto", name) for name in runs]
    steps: dict[str, list[list[tuple[float, float]]]] = {name: [] for name in runs}
    for r in range(args.rounds):
        for c in contenders:
            v = runs[c.variant]
            window = train_ours(v.cfg, v.module, v.datamodule, v.init, c, total, args.mix_warmup)
            c.record(window)
            steps[c.variant].append(window.steps)
            print(f"  round {r + 1} default mix {c.variant:17s} {c.seconds[-1]:7.2f} s", flush=True)

    def per_kind(name: str, kind: bool, clock: int) -> float | None:
        """Mean over the steps of one kind of the median over rounds: wall (clock 0) or CPU seconds."""
        times = [
            statistics.median(t[i][clock] for t in steps[name]) for i, k in enumerate(texts_only) if k == kind
        ]
        return statistics.mean(times) if times else None

    return {
        "config": "experiment=ablation/combined (data=stage1_distill)",
        "steps": args.mix_steps,
        "warmup": args.mix_warmup,
        "texts_only_steps": sum(texts_only),
        "contenders": [
            {
                **contender_record(c, args.mix_steps, 1),
                "s_per_pair_step": per_kind(c.variant, False, 0),
                "s_per_texts_only_step": per_kind(c.variant, True, 0),
                "cpu_s_per_pair_step": per_kind(c.variant, False, 1),
                "cpu_s_per_texts_only_step": per_kind(c.variant, True, 1),
            }
            for c in contenders
        ],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = bench_args(__doc__, n=320, rounds=3, batch_size=32, max_length=64)
    ap.add_argument("--objective", choices=(*OBJECTIVES, "both"), default="both")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them, every round")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW lr of both trainers")
    ap.add_argument("--mix-steps", type=int, default=24, help="timed steps on the default mix (0: skip it)")
    ap.add_argument("--mix-warmup", type=int, default=2, help="untimed steps before them on the default mix")
    ap.add_argument("--smoke", action="store_true", help="tiny random student and teacher (code path only)")
    ap.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: torch's); 1 on a machine shared with other jobs, "
        "where the threads of every parallel region wait for each other",
    )
    ap.add_argument("--out", type=Path, help="write the JSON record here")
    args = ap.parse_args(argv)
    args.steps = max(1, args.n // args.batch_size)  # --n: the timed pairs of a round
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the table and ratios (and the JSON record, also to ``--out``)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # the exported student's unused pooler, reported as missing
    for name in ("lightning", "lightning.pytorch"):  # "GPU available: False" and friends, every round
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    objectives = OBJECTIVES if args.objective == "both" else (args.objective,)
    with tempfile.TemporaryDirectory() as tmp:
        records = [bench_objective(o, args, Path(tmp)) for o in objectives]
        mix = bench_mix(args, Path(tmp)) if args.mix_steps else None
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
        "objectives": [{**r, "ratio": ratios([r]), "levers": lever_table(r)} for r in records],
        "ratio": ratios(records),
        "default_mix": mix,
    }
    print_table(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
