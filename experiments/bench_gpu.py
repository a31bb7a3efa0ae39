"""GPU training-step speed against the hardware: tokens/s, TFLOP/s, % of a measured bf16 matmul
ceiling (MFU) and peak memory, for the paper's small and nano students, in one call of < 10 minutes.

    python experiments/bench_gpu.py [--out bench_gpu.json] [--variants a,b,b_varlen,d,c,cd,e] [--budget-s 540]
    python experiments/bench_gpu.py --smoke --out /tmp/b.json    # tiny models on CPU, seconds

Dependencies: torch, transformers and jina5 modules that import no Hydra, omegaconf or faiss (the
GPU machine has none of them; tests/e2e/test_bench_gpu.py imports this script with them blocked).

Shapes (random init from the configs below, no downloads; values from the models' config.json):
``small`` = Qwen3-0.6B(-Base) (decoder, left padding), ``nano`` = EuroBERT-210m (encoder, right
padding); both last-token pooling, as conf/student/*.yaml. A step: 64 pairs, query 64 +
document 512 tokens, bf16 autocast on the GPU (fp32 weights, as Lightning's ``bf16-mixed``), AdamW.

Variants:
- ``a`` ``hf_eager``: the anchor, plain transformers: ``AutoModel`` (its default attention, its default
  ``use_cache``) on queries and documents, last-token pooling, L2, InfoNCE (tau 0.02) written out in
  a few lines, ``torch.optim.AdamW``.
- ``b`` ``ours_eager``: our step, built in Python without Hydra: ``jina5.model.encoder.Encoder`` (sdpa, as
  the GPU student configs) in ``jina5.training.module.EmbeddingModule`` with the paper's combined objective
  (``jina5.training.objective.Objective``: 2 x distillation onto random 2560-d teacher vectors + InfoNCE + GOR),
  the module's own optimizer groups (``configure_optimizers``; AdamW, fused on the GPU), gradient
  clipping at 1 as the trainer configs; forward (``module.embedding_batch``), backward and optimizer
  step driven here, not by a Trainer.
- ``b_varlen``: ``b`` on variable lengths (queries 8..64, documents 32..512 tokens, uniform, seed 0),
  padded: the reference for ``d``.
- ``c`` ``ours_compiled``: ``b`` with ``student.compile`` (``--compile-mode``).
- ``d`` ``ours_packed``: ``b_varlen``'s batch with ``student.packing`` (``jina5.model.packing``).
- ``cd`` ``ours_compiled_packed``: ``d`` with ``student.compile`` too.
- ``e`` ``ours_grad_cache``: ``b`` at 8 x the batch (512 pairs) with ``module.grad_cache.chunk_size`` = the
  batch (64), through the module's ``grad_cache_backward``, when the module has it (skipped otherwise);
  its peak memory should stay near ``b``'s.

FLOPs (forward + backward, analytic, counted on real tokens only, so padding is waste, not work):
    F = sum over sequences of length n:  6 N n  +  12 l a n^2
with N the non-embedding parameters (every weight but the input embedding table: each token does
2 N multiply-adds forward, 4 N backward), l layers and a = heads x head_dim the attention width
(QK^T and AV: 4 a n^2 forward per layer, x 3 with the backward; the full n^2, causal or not, as
PaLM's MFU does). a = 2048 for Qwen3-0.6B (16 x 128, twice its hidden size), 768 for EuroBERT-210m.
Pooling, loss and optimizer FLOPs are left out (< 0.1%). TFLOP/s = F / step time; MFU = TFLOP/s over
the ceiling, the best of bf16 (B) square matmuls of side 4096, 8192 and 16384 measured here (2 n^3
each); a matmul is the best a kernel of this GPU does, so MFU is the fraction of the hardware
our step uses.

Timing: per variant, ``--warmup`` untimed steps (compilation happens there), then up to ``--iters``
timed steps, each ended by ``torch.cuda.synchronize``; a variant stops timing after ``--variant-budget-s``
(at least one timed step), and a variant is skipped unless it can start ``--reserve-s`` (compiled:
``--compile-reserve-s``) before ``--budget-s`` of the run, so the run fits one call; the JSON is rewritten
after every variant, so a run cut short keeps what it measured. Compiled variants run last. Peak memory: ``torch.cuda.max_memory_allocated``
of the variant (model, optimizer state, activations); on the CPU (``--smoke``) the process's peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import inspect
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from bench_shapes import SHAPES, build_backbone, make_batch, step_flops
from bench_timing import compile_backend, matmul_ceiling, peak_memory_gib, time_steps
from torch import Tensor, nn
from torch.nn import functional as F

from jina5.losses import EmbeddingDistillation, GlobalOrthogonal, InfoNCE
from jina5.model.encoder import Encoder
from jina5.model.tiny import char_tokenizer
from jina5.training.module import EmbeddingModule
from jina5.training.objective import Objective

TEACHER_DIM = 2560  # Qwen3-Embedding-4B, the paper's teacher
SMOKE_TEACHER_DIM = 16
TEMPERATURE = 0.02
LR = 1e-4
VARIANTS = {
    "a": "hf_eager",
    "b": "ours_eager",
    "b_varlen": "ours_eager_varlen",
    "c": "ours_compiled",
    "d": "ours_packed",
    "cd": "ours_compiled_packed",
    "e": "ours_grad_cache",
}
COMPILED = ("c", "cd")
PACKED = ("d", "cd")


# ---------------------------------------------------------------- inputs
def lengths_for(variant: str, pairs: int, q_max: int, d_max: int) -> tuple[list[int], list[int]]:
    """Full lengths, or for the variable-length variants uniform draws (seed 0): queries in
    [q_max / 8, q_max], documents in [d_max / 16, d_max]."""
    if variant not in ("b_varlen", *PACKED):
        return [q_max] * pairs, [d_max] * pairs
    g = torch.Generator().manual_seed(0)
    q = torch.randint(max(1, q_max // 8), q_max + 1, (pairs,), generator=g).tolist()
    d = torch.randint(max(1, d_max // 16), d_max + 1, (pairs,), generator=g).tolist()
    q[0], d[0] = q_max, d_max  # the padded width is the maximum
    return q, d


# ---------------------------------------------------------------- the steps
def hf_step(model: nn.Module, batch: dict, amp: Callable) -> Callable[[], Tensor]:
    """Variant a: plain transformers, last-token pooling (full-length batches: the last column)."""
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    labels = torch.arange(batch["query"]["input_ids"].shape[0], device=batch["query"]["input_ids"].device)

    def step() -> Tensor:
        with amp():
            q = model(**batch["query"]).last_hidden_state[:, -1]
            d = model(**batch["document"]).last_hidden_state[:, -1]
            sims = F.normalize(q.float(), dim=-1) @ F.normalize(d.float(), dim=-1).T
            loss = F.cross_entropy(sims / TEMPERATURE, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def our_module(encoder: Encoder, teacher_dim: int, fused: bool, **module_kwargs) -> EmbeddingModule:
    """``EmbeddingModule`` with the paper's combined objective (2 distill + InfoNCE + GOR)."""
    objective = Objective(
        {
            "distill": EmbeddingDistillation(student_dim=encoder.dim, teacher_dim=teacher_dim),
            "infonce": InfoNCE(temperature=TEMPERATURE),
            "gor": GlobalOrthogonal(),
        },
        {"distill": 2.0, "infonce": 1.0, "gor": 1.0},
    )
    return EmbeddingModule(
        encoder,
        objective.to(next(encoder.parameters()).device),
        optimizer=functools.partial(torch.optim.AdamW, lr=LR, weight_decay=0.01, fused=fused),
        scheduler={"kind": "constant", "warmup_steps": 0, "total_steps": 10**9},
        gather_across_devices=False,
        weight_decay_exclude_1d=True,
        base_reference_dropout=False,
        projection_warm_start=0,
        **module_kwargs,
    ).train()


def our_step(module: EmbeddingModule, batch: dict, amp: Callable) -> Callable[[], Tensor]:
    """Variants b-e: the module's forward (encode, gather, EmbeddingBatch) and objective, backward
    (``e``: the module's ``grad_cache_backward``), clipping at 1, the module's optimizer."""
    opt = module.configure_optimizers()["optimizer"]
    grad_cache = getattr(module, "chunk_size", None) is not None

    def step() -> Tensor:
        with amp():
            if grad_cache:  # the module's GradCache passes; backward and DDP sync left to us
                total, _ = module.grad_cache_backward(
                    batch, backward=Tensor.backward, no_sync=contextlib.nullcontext
                )
            else:
                total, _ = module.objective(module.embedding_batch(batch))
        if not grad_cache:
            total.backward()
        nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total.detach()

    return step


def has_grad_cache() -> bool:
    return "grad_cache" in inspect.signature(EmbeddingModule.__init__).parameters


def run_variant(variant: str, shape_name: str, args: argparse.Namespace, device: torch.device) -> dict:
    shape = SHAPES[shape_name]
    on_gpu = device.type == "cuda"
    pairs = args.pairs * (8 if variant == "e" else 1)
    lengths = lengths_for(variant, pairs, args.query_len, args.doc_len)
    # ours: sdpa, as conf/student/{qwen3_0_6b,eurobert_210m}.yaml; the anchor: transformers' default
    backbone = build_backbone(shape, device, args.smoke, attn="sdpa" if variant != "a" else None)
    vocab = backbone.config.vocab_size
    teacher_dim = SMOKE_TEACHER_DIM if args.smoke else TEACHER_DIM
    batch = make_batch(shape, lengths, vocab, teacher_dim, device)
    flops = step_flops(backbone, lengths[0] + lengths[1])
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else contextlib.nullcontext()

    if variant == "a":
        step = hf_step(backbone, batch, amp)
    else:
        with compile_backend("eager" if args.smoke and variant in COMPILED else None):
            encoder = Encoder(
                backbone,
                tokenizer=char_tokenizer(),
                pooling=shape.pooling,
                padding_side=shape.padding_side,
                compile=variant in COMPILED,
                compile_mode=args.compile_mode,
                packing=variant in PACKED,
            )
        module_kwargs = {"grad_cache": {"chunk_size": args.pairs}} if variant == "e" else {}
        step = our_step(our_module(encoder, teacher_dim, fused=on_gpu, **module_kwargs), batch, amp)
    timing = time_steps(step, device, args.warmup, args.iters, args.variant_budget_s)
    tokens = sum(lengths[0]) + sum(lengths[1])
    return {
        "pairs": pairs,
        "tokens_per_step": tokens,
        "tokens_per_s": tokens / timing["step_s"],
        "flops_per_step": flops,
        "tflops": flops / timing["step_s"] / 1e12,
        "peak_mem_gib": peak_memory_gib(device),
        **timing,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny models on the CPU (code path only)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--shapes", default="small,nano")
    p.add_argument("--variants", default="a,b,b_varlen,d,e,c,cd", help=f"of {','.join(VARIANTS)}")
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--query-len", type=int, default=64)
    p.add_argument("--doc-len", type=int, default=512)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--compile-mode", default=None, help="student.compile_mode (None: torch's default)")
    p.add_argument(
        "--static-shapes",
        action="store_true",
        help="compile one graph per shape (no automatic dynamic shapes)",
    )
    p.add_argument("--variant-budget-s", type=float, default=90.0, help="stop timing a variant after this")
    p.add_argument("--budget-s", type=float, default=540.0, help="the run's time budget (s)")
    p.add_argument(
        "--reserve-s", type=float, default=45.0, help="start a variant only this long before --budget-s"
    )
    p.add_argument("--compile-reserve-s", type=float, default=180.0, help="the same for a compiled variant")
    args = p.parse_args(argv)
    if args.smoke:
        args.pairs, args.query_len, args.doc_len, args.warmup, args.iters = 4, 8, 32, 1, 1
    if args.warmup < 1 or args.iters < 1:
        raise SystemExit(f"--warmup ({args.warmup}) and --iters ({args.iters}) must be >= 1")
    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if args.static_shapes:
        torch._dynamo.config.automatic_dynamic_shapes = False
    ceiling = matmul_ceiling(device, args.smoke)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; the variants are {list(VARIANTS)}")
    shapes = [s.strip() for s in args.shapes.split(",")]
    order = [(s, v) for v in variants if v not in COMPILED for s in shapes]
    order += [(s, v) for v in variants if v in COMPILED for s in shapes]  # the slowest to warm up, last
    results: list[dict] = []
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "smoke": args.smoke,
        "matmul_ceiling": ceiling,
        "settings": {
            k: getattr(args, k) for k in ("pairs", "query_len", "doc_len", "warmup", "iters", "compile_mode")
        },
        "results": results,
    }
    for shape_name, variant in order:
        row = {"shape": shape_name, "model_type": SHAPES[shape_name].model_type, "variant": variant}
        row["name"] = VARIANTS[variant]
        if variant == "e" and not has_grad_cache():
            row["status"] = "skipped: EmbeddingModule has no grad_cache"
        elif time.perf_counter() - start > args.budget_s - (
            args.compile_reserve_s if variant in COMPILED else args.reserve_s
        ):
            row["status"] = f"skipped: too close to --budget-s {args.budget_s:.0f}"
        else:
            try:
                row.update(run_variant(variant, shape_name, args, device))
                row["mfu_pct"] = 100 * row["tflops"] / ceiling["tflops"]
                row["status"] = "ok"
            except Exception as e:  # an OOM or a failed compile must not lose the other rows
                row["status"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        results.append(row)
        print(json.dumps(row), flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if variant in COMPILED:
            torch._dynamo.reset()
        report["wall_s"] = time.perf_counter() - start
        if args.out:  # after every variant: a run cut short keeps its rows
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))
    print(table(report))
    return report


def table(report: dict) -> str:
    ceiling = report["matmul_ceiling"]
    lines = [
        f"{report['device']}, torch {report['torch']}, transformers {report['transformers']}; "
        f"matmul ceiling {ceiling['tflops']:.3g} TFLOP/s ({ceiling['dtype']}, n={ceiling['n']})",
        "",
        "| shape | variant | tokens/s | TFLOP/s | MFU % | peak GiB | step s | warmup s | first loss | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if r["status"] != "ok":
            lines.append(f"| {r['shape']} | {r['variant']} {r['name']} | | | | | | | | {r['status']} |")
            continue
        lines.append(
            f"| {r['shape']} | {r['variant']} {r['name']} | {r['tokens_per_s']:,.0f} | {r['tflops']:.3g} | "
            f"{r['mfu_pct']:.1f} | {r['peak_mem_gib']:.1f} | {r['step_s']:.3f} | {r['warmup_s']:.1f} | {r['first_loss']:.4f} | ok |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
