"""The figures experiments/bench_train.py reports from its JSON record: the throughput ratios of the
contenders, each speed lever's effect, the CPU utilisation, the default mix, and the printed tables.
"""

from __future__ import annotations

from bench_train_levers import ALL_NAME, TODAY_NAME


def _ours(record: dict, precision: str, variant: str) -> dict:
    return next(
        c
        for c in record["contenders"]
        if (c["contender"], c["precision"], c["variant"]) == ("jina5", precision, variant)
    )


def ratios(records: list[dict]) -> dict[str, float]:
    """Throughput ratios over ``records`` (one objective or several together: timed steps over their
    seconds, each objective's steps counted once): ``fp32`` = jina5 (all levers) at precision=auto over
    sentence-transformers at its default fp32, ``bf16`` = the same over sentence-transformers in bf16,
    ``fp32_both`` = both at fp32; ``cpu_*`` the same from the process's CPU seconds (steadier than wall
    time on a machine shared with other jobs)."""

    def steps_per_s(name: str, precision: str, key: str) -> float:
        secs = [
            c[key]
            for r in records
            for c in r["contenders"]
            if (c["contender"], c["precision"]) == (name, precision) and c["variant"] in ("", ALL_NAME)
        ]
        return len(secs) / sum(secs)

    out = {}
    for prefix, key in (("", "s_per_step"), ("cpu_", "cpu_s_per_step")):
        ours, st = steps_per_s("jina5", "auto", key), steps_per_s("sentence-transformers", "fp32", key)
        out[f"{prefix}fp32"] = ours / st
        out[f"{prefix}bf16"] = ours / steps_per_s("sentence-transformers", "bf16", key)
        out[f"{prefix}fp32_both"] = steps_per_s("jina5", "fp32", key) / st
    return out


def lever_table(record: dict) -> list[dict]:
    """Each variant of ours at precision=auto (today's path, each lever alone, all levers): its step's
    wall and CPU seconds as fractions of today's, and its page faults per step."""
    today = _ours(record, "auto", TODAY_NAME)
    return [
        {
            "variant": c["variant"],
            "s_per_step": c["s_per_step"],
            "of_today": c["s_per_step"] / today["s_per_step"],
            "cpu_s_per_step": c["cpu_s_per_step"],
            "cpu_of_today": c["cpu_s_per_step"] / today["cpu_s_per_step"],
            "faults_per_step": c["faults_per_step"],
        }
        for c in record["contenders"]
        if c["contender"] == "jina5" and c["precision"] == "auto"
    ]


def print_table(result: dict) -> None:
    print(
        f"\n{result['student']}, {result['dataset']} pairs, batch {result['batch_size']}, query/document "
        f"{result['query_max_length']}/{result['document_max_length']} tokens, {result['steps']} timed steps "
        f"after {result['warmup']}, torch threads {result['torch_threads']}, CPU bf16 flags "
        f"{result['cpu_bf16_flags'] or 'none'}, median of {result['rounds']} alternating rounds"
    )
    print(
        f"{'contender':22s} {'precision':10s} {'variant':17s} {'objective':9s} {'pairs/s':>8s} {'s/step':>7s} "
        f"{'cpu s':>6s} {'autocast':>8s}  rounds (s)"
    )
    for record in result["objectives"]:
        for c in record["contenders"]:
            rounds = ", ".join(f"{s:.1f}" for s in c["seconds"])
            print(
                f"{c['contender']:22s} {c['precision']:10s} {c['variant']:17s} {record['objective']:9s} "
                f"{c['pairs_per_s']:8.1f} {c['s_per_step']:7.3f} {c['cpu_s_per_step']:6.2f} "
                f"{c['bf16_autocast']:>8s}  {rounds}"
            )
        loss = record["first_batch_loss"]
        ratio = record["ratio"]
        print(
            f"  {record['objective']}: same batches and tokens: {record['same_batches']}; first-batch loss "
            f"{loss}; jina5 auto / ST fp32 {ratio['fp32']:.2f}, / ST bf16 {ratio['bf16']:.2f}; "
            f"both fp32 {ratio['fp32_both']:.2f}"
        )
    for record in result["objectives"]:
        print(
            f"\nspeed levers, {record['objective']}, precision=auto (fraction of today's step; "
            "cpu: the process's CPU time)"
        )
        print(
            f"{'variant':17s} {'s/step':>7s} {'of today':>8s} {'cpu s':>6s} {'of today':>8s} {'faults/step':>11s}"
        )
        for v in record["levers"]:
            print(
                f"{v['variant']:17s} {v['s_per_step']:7.3f} {v['of_today']:8.2f} {v['cpu_s_per_step']:6.2f} "
                f"{v['cpu_of_today']:8.2f} {v['faults_per_step']:11.0f}"
            )
        ceiling, cpu_ceiling = (record[f"bf16_matmul_ceiling_gflops_per_{k}"] for k in ("s", "cpu_s"))
        t, h, i = record["ceiling_shape"]
        print(
            f"CPU utilisation, {record['objective']}: {record['matmul_gflop_per_step']:.1f} GFLOP of matmuls a step "
            f"on real tokens (forward + backward); bf16 matmul ceiling ({t} x {h}) @ ({h} x {i}) in this run: "
            f"{ceiling:.0f} GFLOP/s ({cpu_ceiling:.0f} per CPU second)"
        )
        for c in record["contenders"]:
            if c["variant"] in ("", ALL_NAME, TODAY_NAME):
                print(
                    f"  {c['contender']} {c['precision']} {c['variant']}: {c['gflops_per_s']:.0f} GFLOP/s = "
                    f"{c['gflops_per_s'] / ceiling:.0%} of the ceiling ({c['gflops_per_cpu_s']:.0f} per CPU "
                    f"second = {c['gflops_per_cpu_s'] / cpu_ceiling:.0%})"
                )
    mix = result.get("default_mix")
    if mix:
        print(
            f"\ndefault mix, {mix['config']}, precision=auto: {mix['steps']} timed steps after {mix['warmup']} "
            f"({mix['texts_only_steps']} texts-only)"
        )
        today = next(c for c in mix["contenders"] if c["variant"] == TODAY_NAME)
        for c in mix["contenders"]:
            kinds = ", ".join(
                f"{kind} {c[key]:.3f} s ({c[key] / today[key]:.2f}), cpu {c['cpu_' + key]:.2f} s "
                f"({c['cpu_' + key] / today['cpu_' + key]:.2f})"
                for kind, key in (("pair", "s_per_pair_step"), ("texts-only", "s_per_texts_only_step"))
                if c[key] is not None
            )
            print(
                f"{c['variant']:17s} {c['s_per_step']:7.3f} s/step ({c['s_per_step'] / today['s_per_step']:.2f} of "
                f"today's), cpu {c['cpu_s_per_step']:.2f} s ({c['cpu_s_per_step'] / today['cpu_s_per_step']:.2f}), "
                f"faults {c['faults_per_step']:.0f}; {kinds}"
            )
    r = result["ratio"]
    print(f"\nratio jina5 / sentence-transformers: {r['fp32']:.2f} (cpu time: {r['cpu_fp32']:.2f})")
    print(f"ratio jina5 / sentence-transformers (bf16): {r['bf16']:.2f} (cpu time: {r['cpu_bf16']:.2f})")
    print(
        f"(jina5 at precision=auto, all levers; both at fp32: {r['fp32_both']:.2f}, cpu time: "
        f"{r['cpu_fp32_both']:.2f})"
    )
