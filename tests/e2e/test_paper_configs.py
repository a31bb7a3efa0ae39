"""The paper-scale experiment pack (conf/experiment/paper/, conf/paper_model/): every number the
paper states, read from the composed configs; and a 2-step smoke run of each on tiny models, against local
stand-ins of its hub data sets (same columns), chained as in the paper: stage 1 -> (long context ->) adapters."""

from __future__ import annotations

import random
from pathlib import Path

import datasets
import lightning as L
import pytest
from helpers import compose, run_cfg
from omegaconf import OmegaConf

from jina5.model.encoder import Encoder
from jina5.model.rope import rope_theta
from jina5.train import train

# docs/paper.md, Models, by model: student, embedding dim, card Matryoshka dims, training / inference
# RoPE theta, stage-1 global batch "8 x N", long-context step (small only)
MODELS = {
    "small": {
        "student": "Qwen/Qwen3-0.6B-Base",
        "dims": [32, 64, 128, 256, 512, 768, 1024],
        "train_theta": 1e6,
        "serve_theta": 3.5e6,
        "batch": 512,
        "stage1_run": "paper_small_long_context",
    },
    "nano": {
        "student": "EuroBERT/EuroBERT-210m",
        "dims": [32, 64, 128, 256, 512, 768],
        "train_theta": 2.5e5,
        "serve_theta": 1e6,
        "batch": 1024,
        "stage1_run": "paper_nano_stage1",
    },
}
# docs/paper.md, Stage 2: steps and learning rate per adapter; LoRA rank 32, alpha 32, dropout 0.1
ADAPTERS = {
    "retrieval": (8000, 2e-5),
    "text_matching": (20000, 5e-5),
    "clustering": (20000, 1e-5),
    "classification": (30000, 4e-4),
}
WEB_SEARCH = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
CLUSTERING = "Instruct: Identify the topic or theme of the given document\nQuery:"


def resolved(*overrides: str) -> dict:
    cfg = compose(["paths.output_root=/runs-root", *overrides])
    name = cfg.experiment_name  # needs the hydra node
    out = OmegaConf.to_container(cfg, resolve=False)
    out.pop("hydra")
    out["experiment_name"], out["paths"]["output_dir"] = name, "/out"
    return OmegaConf.to_container(OmegaConf.create(out), resolve=True)


def datasets_of(cfg: dict) -> dict:
    return {name: spec for name, spec in cfg["data"]["datasets"].items() if spec is not None}


def check_model(cfg: dict, model: str) -> None:
    """What paper_model/<model> sets, against docs/paper.md's Models table."""
    paper = MODELS[model]
    assert cfg["student"]["source"] == paper["student"]
    assert cfg["teacher"]["source"] == "Qwen/Qwen3-Embedding-4B"
    assert cfg["trainer"]["accelerator"] == "gpu"
    assert cfg["student"]["pooling"] == "last_token" and cfg["teacher"]["pooling"] == "last_token"
    assert cfg["export"]["rope_theta"] == paper["serve_theta"]
    mrl = cfg["objective"]["matryoshka"]
    assert mrl["enabled"] and mrl["dims"] == paper["dims"] and mrl["weights"] is None
    assert all(str(spec["source"]).startswith("hf:") for spec in datasets_of(cfg).values())  # hub data


@pytest.mark.parametrize("model", sorted(MODELS))
def test_stage1_has_the_papers_numbers(model):
    cfg = resolved(f"experiment=paper/stage1_{model}")
    paper = MODELS[model]
    check_model(cfg, model)
    assert cfg["experiment_name"] == f"paper_{model}_stage1"
    assert (cfg["trainer"]["max_steps"], cfg["optimizer"]["lr"]) == (50000, 1e-4)
    assert cfg["student"]["rope_theta"] == paper["train_theta"]
    assert cfg["trainer"]["devices"] == 8
    specs = datasets_of(cfg)
    assert len(specs) >= 5
    for spec in specs.values():  # "8 x 512" (small) / "8 x 1024" (nano), max 512 tokens
        assert spec["batch_size"] == paper["batch"]
        assert spec["query_max_length"] == spec["document_max_length"] == 512
    weights = cfg["objective"]["weights"]
    assert weights["distill"] == 1.0 and all(w == 0 for k, w in weights.items() if k != "distill")
    assert cfg["data"]["query_instruction"] == WEB_SEARCH and cfg["init_from"] is None
    assert cfg.get("adapter") is None  # a full fine-tune


def test_long_context_has_the_papers_numbers():
    cfg = resolved("experiment=paper/long_context")
    check_model(cfg, "small")
    assert cfg["experiment_name"] == "paper_small_long_context"
    assert cfg["trainer"]["max_steps"] == 6500
    assert cfg["student"]["rope_theta"] == 5e5 and cfg["export"]["rope_theta"] == 3.5e6
    assert all(spec["document_max_length"] == 4096 for spec in datasets_of(cfg).values())
    assert cfg["teacher"]["max_length"] == 4096
    assert cfg["init_from"] == "/runs-root/runs/paper_small_stage1-seed0"


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("task", sorted(ADAPTERS))
def test_adapters_have_the_papers_numbers(task, model):
    cfg = resolved(f"experiment=paper/adapter_{task}", f"paper_model={model}")
    check_model(cfg, model)
    assert cfg["experiment_name"] == f"paper_{model}_adapter_{task}"
    assert (cfg["trainer"]["max_steps"], cfg["optimizer"]["lr"]) == ADAPTERS[task]
    lora = cfg["adapter"]
    assert (lora["task"], lora["rank"], lora["alpha"], lora["dropout"]) == (
        task.replace("_", "-"),
        32,
        32,
        0.1,
    )
    assert cfg["init_from"] == f"/runs-root/runs/{MODELS[model]['stage1_run']}-seed0"
    weights, losses = cfg["objective"]["weights"], cfg["objective"]["losses"]
    specs = datasets_of(cfg)
    if task == "retrieval":
        assert weights == {"infonce": 1.0, "distill": 2.0, "gor": 1.0}
        assert (
            losses["infonce"]["temperature"] == 0.02 and cfg["data"]["hard_negatives"]["num_negatives"] >= 1
        )
        assert lora["average_with"] is not None  # the last checkpoint averaged with an earlier one
        assert cfg["data"]["query_instruction"] == WEB_SEARCH
    elif task == "text_matching":
        assert weights == {"cosent": 1.0, "infonce": 1.0, "distill": 2.0}
        assert losses["cosent"]["temperature"] == 0.05
        assert all(spec["batch_size"] == 256 for spec in specs.values())
        assert {spec["task"] for spec in specs.values()} == {
            "sts",
            "retrieval",
        }  # scored and unscored batches
    elif task == "clustering":
        assert weights == {"distill": 1.0}
        assert cfg["data"]["query_instruction"] == cfg["data"]["document_instruction"] == CLUSTERING
    else:
        assert weights == {"infonce": 1.0, "relational": 20.0} and cfg["use_teacher"] is False
        assert losses["infonce"]["bidirectional"] and losses["infonce"]["temperature"] == 0.02
        assert all(spec["label_triplets"] and spec["label_negatives"] == 7 for spec in specs.values())


# ---------------------------------------------------------------------------------------- smoke runs
WORDS = [
    "river",
    "mountain",
    "city",
    "music",
    "science",
    "history",
    "football",
    "garden",
    "market",
    "storm",
    "planet",
    "poem",
]


def write_stand_in(path: Path, columns: dict[str, str], rows: int = 24) -> None:
    """A local data set with the hub set's columns (``columns``: source -> schema column): texts, 3 class
    labels (a ClassLabel, as the hub's), or scores 0..5; the same for the same ``path`` name."""
    if (path / "train.parquet").exists():  # the same stand-in, written by an earlier run
        return
    rng = random.Random(path.name)
    data, features = {}, {}
    for src, dst in columns.items():
        if dst == "label":
            data[src], features[src] = (
                [i % 3 for i in range(rows)],
                datasets.ClassLabel(names=["a", "b", "c"]),
            )
        elif dst == "score":
            data[src], features[src] = [float(i % 6) for i in range(rows)], datasets.Value("float32")
        else:
            data[src] = [f"{dst} {i} " + " ".join(rng.choices(WORDS, k=8)) for i in range(rows)]
            features[src] = datasets.Value("string")
    path.mkdir(parents=True)
    datasets.Dataset.from_dict(data, features=datasets.Features(features)).to_parquet(path / "train.parquet")


def stand_in_sources(experiment: str, root: Path) -> list[str]:
    """Overrides pointing every hub source of ``experiment`` at a local stand-in (its split kept)."""
    overrides = []
    for name, spec in datasets_of(resolved(f"experiment=paper/{experiment}")).items():
        *_, split = spec["source"].split(":")
        local = root / experiment / name
        write_stand_in(local, spec["columns"])
        overrides.append(f"data.datasets.{name}.source=hf:{local}:{split}")
    return overrides


class Observed(L.Callback):
    """The training theta of the student's rotary buffers, and the tables the run trained on."""

    def on_train_start(self, trainer, module) -> None:
        rotary = [m for m in module.encoder.backbone.modules() if hasattr(m, "inv_freq")]
        self.inv_freq0 = float(rotary[0].inv_freq[1])  # 1 / theta^(2/d)
        self.tables = {t.spec.name: len(t) for t in trainer.datamodule.tables}
        self.steps: list[int] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append(trainer.global_step)


def smoke(
    tmp_path: Path, experiment: str, model: str, *overrides: str, trainer: str = "cpu", steps: int = 2
) -> tuple[Path, Observed]:
    """A ``steps``-step run of ``experiment=paper/<experiment>`` on tiny models (tiny Qwen3 teacher) and
    local stand-ins, on ``trainer=<trainer>`` with one device."""
    student = {"small": "qwen3", "nano": "eurobert"}[model]
    cfg = run_cfg(
        tmp_path,
        f"experiment=paper/{experiment}",
        f"paper_model={model}",
        "teacher.source=tiny:qwen3",
        "teacher.max_length=48",
        f"trainer={trainer}",
        "trainer.devices=1",
        "debug=smoke",
        f"trainer.max_steps={steps}",
        *(["++data.num_workers=0"] if trainer == "cpu" else []),  # tiny runs on 2 shared cores
        "trainer.val_check_interval=2",
        "data.dev_datasets=[bbc]",
        "data.dev_pairs=8",
        "data.max_rows_cap=8",
        *stand_in_sources(experiment, tmp_path / "stand-ins"),
        *overrides,
        student=student,
        small_data=False,
    )
    observed = Observed()
    summary = train(cfg, callbacks=[observed])
    assert summary["steps"] == steps
    assert set(observed.tables) == set(datasets_of(resolved(f"experiment=paper/{experiment}")))
    assert all(rows == 8 for rows in observed.tables.values())  # the row cap, through the config's columns
    return Path(summary["run_dir"]), observed


PAPER_EXPERIMENTS = sorted(
    p.stem for p in (Path(__file__).parents[2] / "conf/experiment/paper").glob("*.yaml")
)


@pytest.mark.parametrize("experiment", PAPER_EXPERIMENTS)
def test_paper_data_configs_tokenise_in_worker_processes(experiment):
    """A GPU run must not wait on the training process to tokenise its next 2 x 512 texts: every paper
    experiment's data config collates in DataLoader workers (the batches are the same; datamodule.py).
    Composed from this checkout's conf/ (the installed package may point at another checkout's)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(__file__).parents[2] / "conf"), version_base="1.3"):
        cfg = hydra_compose("train", overrides=[f"experiment=paper/{experiment}"])
    assert cfg.data.get("num_workers", 0) == 4


def theta_of(inv_freq1: float, dim: int = 8) -> float:
    """theta from w_1 = 1 / theta^(2/d)."""
    return inv_freq1 ** (-dim / 2)


def check_export(run_dir: Path, serve_theta: float) -> Encoder:
    encoder = Encoder.from_pretrained(run_dir / "encoder")
    assert rope_theta(encoder.backbone.config) == serve_theta
    return encoder


@pytest.fixture(scope="module")
def stage1_small(tmp_path_factory) -> tuple[Path, Path]:
    tmp_path = tmp_path_factory.mktemp("paper")
    run_dir, observed = smoke(tmp_path, "stage1_small", "small")
    assert theta_of(observed.inv_freq0) == pytest.approx(1e6, rel=1e-4)  # trained at student.rope_theta
    check_export(run_dir, 3.5e6)  # served at export.rope_theta
    return tmp_path, run_dir


def test_stage1_small_then_its_retrieval_adapter(stage1_small):
    """The chain the pack encodes, on tiny models: stage 1, then an adapter on it (init_from)."""
    tmp_path, base = stage1_small
    run_dir, observed = smoke(
        tmp_path, "adapter_retrieval", "small", f"init_from={base}", "adapter.average_with='step=1'"
    )
    assert theta_of(observed.inv_freq0) == pytest.approx(1e6, rel=1e-4)  # rebuilt at the training theta
    assert check_export(run_dir, 3.5e6).adapters == ["retrieval"]


@pytest.mark.slow  # 5 more tiny runs: about 1-2 min on 2 busy cores
def test_every_paper_experiment_runs_on_tiny_models(stage1_small):
    tmp_path, base = stage1_small
    long_context, observed = smoke(tmp_path, "long_context", "small", f"init_from={base}")
    assert theta_of(observed.inv_freq0) == pytest.approx(5e5, rel=1e-4)  # the long-context training theta
    check_export(long_context, 3.5e6)
    for task in ("text_matching", "clustering", "classification"):
        run_dir, _ = smoke(tmp_path, f"adapter_{task}", "small", f"init_from={long_context}")
        assert check_export(run_dir, 3.5e6).adapters == [task.replace("_", "-")]
    nano, observed = smoke(tmp_path, "stage1_nano", "nano")
    assert theta_of(observed.inv_freq0) == pytest.approx(2.5e5, rel=1e-4)
    check_export(nano, 1e6)
    run_dir, _ = smoke(tmp_path, "adapter_classification", "nano", f"init_from={nano}")
    assert check_export(run_dir, 1e6).adapters == ["classification"]


@pytest.mark.gpu
@pytest.mark.parametrize("trainer", ["gpu", "fsdp"])
def test_the_paper_chain_on_one_gpu(tmp_path, trainer):
    """stage1_small, a resume that extends it, then its retrieval adapter, each through ``jina5.train`` on
    one GPU with the GPU trainer configs as shipped: bf16-mixed, fused AdamW (``optimizer.fused: null``),
    gradient clipping, the projection warm start, hard-negative mining, the rank-local teacher fill."""
    base, observed = smoke(tmp_path, "stage1_small", "small", "precision=auto", trainer=trainer, steps=3)
    assert observed.steps == [1, 2, 3]
    _, resumed = smoke(
        tmp_path, "stage1_small", "small", "precision=auto", "ckpt_path=last", trainer=trainer, steps=4
    )
    assert resumed.steps == [4]  # went on from last.ckpt
    assert theta_of(resumed.inv_freq0) == pytest.approx(1e6, rel=1e-4)  # fp32 rotary frequencies
    check_export(base, 3.5e6)
    run_dir, adapter = smoke(
        tmp_path,
        "adapter_retrieval",
        "small",
        "precision=auto",
        f"init_from={base}",
        # FSDP refuses checkpoint averaging (it would load into the wrapped module)
        "adapter.average_with=null" if trainer == "fsdp" else "adapter.average_with='step=1'",
        trainer=trainer,
        steps=3,
    )
    assert adapter.steps == [1, 2, 3] and check_export(run_dir, 3.5e6).adapters == ["retrieval"]
