"""The machine record (jina5.eval.machine) and its line under the tables (jina5.report.tables)."""

from __future__ import annotations

import pandas as pd

from jina5.eval.machine import cpu_model, describe, machine
from jina5.report.tables import machines_note


def test_cpu_model_reads_the_model_name_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654\nflags\t: avx512_bf16\n"
    )
    assert cpu_model(str(info)) == "AMD EPYC 9654"
    assert cpu_model(str(tmp_path / "missing")) != ""


def test_describe_names_cpu_bf16_flags_and_library_versions():
    info = {
        "cpu": "Intel Xeon",
        "bf16_flags": ["amx_bf16", "avx512_bf16"],
        "accelerator": None,
        "libraries": {"torch": "2.13.0", "transformers": "5.24.0"},
    }
    assert describe(info) == "Intel Xeon (bf16: amx_bf16, avx512_bf16); torch 2.13.0, transformers 5.24.0"
    assert describe({**info, "bf16_flags": []}).startswith("Intel Xeon (bf16: none);")
    here = machine()
    assert here["libraries"]["torch"] and isinstance(here["bf16_flags"], list)


def test_tables_name_each_machine_of_their_runs_and_old_runs_as_not_recorded():
    amd = {"cpu": "AMD EPYC", "bf16_flags": ["avx512_bf16"], "accelerator": None, "libraries": {}}
    df = pd.DataFrame(
        {
            "experiment": ["a", "a", "b", "c", "other", "d"],
            "run_id": ["a0", "a0", "b0", "c0", "o0", "d0"],
            # d was trained, never evaluated: its wall time is no evaluation and names no machine
            "task": ["retrieval/news", "sts/lee", "sts/lee", "sts/lee", "sts/lee", "training"],
            "config": [
                {"machine": amd},
                {"machine": amd},
                {"machine": amd},
                {},
                {"machine": {"cpu": "X"}},
                {},
            ],
        }
    )
    result: dict = {}
    lines = machines_note(df, ["a", "b", "c", "d"], result)
    assert lines == ["Evaluated on: AMD EPYC (bf16: avx512_bf16); and on not recorded.", ""]
    assert result["machines"] == [amd, {"cpu": "not recorded"}]
