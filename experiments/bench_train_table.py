"""The figures experiments/bench_train.py reports from its JSON record: the throughput ratios of the
contenders and the printed table.
"""

from __future__ import annotations


def ratios(records: list[dict]) -> dict[str, float]:
    """Throughput ratios over ``records`` (one objective or several together: timed steps over their
    seconds, each objective's steps counted once): ``fp32`` = jina5 at precision=auto over
    sentence-transformers at its default fp32, ``bf16`` = the same over sentence-transformers in bf16,
    ``fp32_both`` = both at fp32."""

    def steps_per_s(name: str, precision: str) -> float:
        secs = [
            c["s_per_step"]
            for r in records
            for c in r["contenders"]
            if (c["contender"], c["precision"]) == (name, precision)
        ]
        return len(secs) / sum(secs)

    ours, st = steps_per_s("jina5", "auto"), steps_per_s("sentence-transformers", "fp32")
    return {
        "fp32": ours / st,
        "bf16": ours / steps_per_s("sentence-transformers", "bf16"),
        "fp32_both": steps_per_s("jina5", "fp32") / st,
    }


def print_table(result: dict) -> None:
    print(
        f"\n{result['student']}, {result['dataset']} pairs, batch {result['batch_size']}, query/document "
        f"{result['query_max_length']}/{result['document_max_length']} tokens, {result['steps']} timed steps "
        f"after {result['warmup']}, torch threads {result['torch_threads']}, CPU bf16 flags "
        f"{result['cpu_bf16_flags'] or 'none'}, median of {result['rounds']} alternating rounds"
    )
    print(
        f"{'contender':22s} {'precision':10s} {'objective':9s} {'pairs/s':>8s} {'s/step':>7s} "
        f"{'autocast':>8s}  rounds (s)"
    )
    for record in result["objectives"]:
        for c in record["contenders"]:
            rounds = ", ".join(f"{s:.1f}" for s in c["seconds"])
            print(
                f"{c['contender']:22s} {c['precision']:10s} {record['objective']:9s} "
                f"{c['pairs_per_s']:8.1f} {c['s_per_step']:7.3f} {c['bf16_autocast']:>8s}  {rounds}"
            )
        loss = record["first_batch_loss"]
        ratio = record["ratio"]
        print(
            f"  {record['objective']}: same batches and tokens: {record['same_batches']}; first-batch loss "
            f"{loss}; jina5 auto / ST fp32 {ratio['fp32']:.2f}, / ST bf16 {ratio['bf16']:.2f}; "
            f"both fp32 {ratio['fp32_both']:.2f}"
        )
    print(f"ratio jina5 / sentence-transformers: {result['ratio']['fp32']:.2f}")
    print(f"ratio jina5 / sentence-transformers (bf16): {result['ratio']['bf16']:.2f}")
    print(f"(jina5 at precision=auto; both at fp32: {result['ratio']['fp32_both']:.2f})")
