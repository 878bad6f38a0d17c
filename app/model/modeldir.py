"""The model directory: model.pkl plus the manifest model.json, and the checks made before unpickling.

The manifest is what Azure ML's Model.register kept in the cloud (name, version, tags, description),
plus what the edge needs to load the model safely: the sha256 of the pickle and the versions of the
libraries it was pickled with. Pickles do not cross scikit-learn or numpy major versions, so a
mismatch is refused with the fix, never left to fail deep inside unpickling.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST_FILE = "model.json"
MODEL_FILE = "model.pkl"
# The libraries whose versions decide whether a pickle loads and predicts the same.
TRACKED_LIBRARIES = ("numpy", "scipy", "scikit-learn", "joblib", "threadpoolctl")
FIX = (
    "Fix: retrain or re-register the model with this runtime's versions (`make model`, or "
    "`python -m app register ...` in the project's virtualenv), or rebuild the image with the "
    "versions in requirements/model.txt."
)


class ModelDirError(RuntimeError):
    """The model directory cannot be used; the message says why and how to fix it."""


@dataclass
class Manifest:
    name: str
    version: int
    features: list[str]
    sha256: str
    libraries: dict[str, str]
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    labels: list[Any] | None = None
    file: str = MODEL_FILE
    created: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"


def library_versions() -> dict[str, str]:
    """Versions of Python and the tracked libraries in this process's environment."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(model_dir: Path) -> Manifest:
    path = Path(model_dir) / MANIFEST_FILE
    if not path.is_file():
        raise ModelDirError(
            f"{path} is missing. Register the model first: "
            "`python -m app register path/to/model.pkl --name NAME --features a.b,c.d`."
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelDirError(f"{path} must hold a JSON object")
    missing = [k for k in ("name", "version", "features", "sha256", "libraries") if k not in raw]
    if missing:
        raise ModelDirError(f"{path} lacks {', '.join(missing)}; re-register the model to rewrite it")
    problems = _manifest_problems(raw)
    if problems:
        raise ModelDirError(f"{path}: " + "; ".join(problems) + "; re-register the model to rewrite it")
    known = set(Manifest.__dataclass_fields__)
    return Manifest(**{k: v for k, v in raw.items() if k in known})


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


# field -> (check, what it must be): a wrong type would otherwise fail later, deep in loading or encoding
_MANIFEST_TYPES: dict[str, tuple[Any, str]] = {
    "name": (lambda v: isinstance(v, str) and 0 < len(v) <= 256, "a string of 1 to 256 characters"),
    "version": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number, 0 or more"),
    "features": (
        lambda v: isinstance(v, list) and 0 < len(v) <= 100_000 and all(isinstance(f, str) and f for f in v),
        "a non-empty list of dotted paths",
    ),
    "sha256": (lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v), "64 hex digits"),
    "libraries": (_is_str_map, "an object of library -> version strings"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "tags": (_is_str_map, "an object of string -> string"),
    "labels": (lambda v: v is None or isinstance(v, list), "a list or null"),
    "file": (
        lambda v: isinstance(v, str) and v and "/" not in v and "\\" not in v and v not in (".", ".."),
        "a file name in the directory",
    ),
    "created": (lambda v: isinstance(v, str), "a string"),
}


def _manifest_problems(raw: dict[str, Any]) -> list[str]:
    """Every field of the manifest that has the wrong type, named."""
    return [f"'{key}' must be {what}" for key, (ok, what) in _MANIFEST_TYPES.items() if key in raw and not ok(raw[key])]


def compare_libraries(trained: dict[str, str], running: dict[str, str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for differences between the versions a model was pickled with and ours.

    Errors are the differences known to break loading or change predictions: numpy's major version
    (numpy 2 pickles need numpy._core) and scikit-learn's major.minor (tree internals change).
    Any other difference is a warning.
    """
    errors: list[str] = []
    warnings: list[str] = []
    for lib, want in trained.items():
        have = running.get(lib)
        if have is None or have == want:
            continue
        text = f"{lib} {want} (trained) vs {have} (here)"
        if lib == "numpy":
            breaks = want.split(".")[0] != have.split(".")[0]
        elif lib == "scikit-learn":
            breaks = want.split(".")[:2] != have.split(".")[:2]
        else:
            breaks = False
        (errors if breaks else warnings).append(text)
    return errors, warnings


def verify_model_dir(model_dir: Path, allow_version_mismatch: bool = False) -> Manifest:
    """Check the manifest, the pickle's sha256 and the library versions; return the manifest."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    model_path = model_dir / manifest.file
    if not model_path.is_file():
        raise ModelDirError(f"{model_path} is missing (named by {model_dir / MANIFEST_FILE})")
    actual = sha256_of(model_path)
    if actual != manifest.sha256:
        raise ModelDirError(
            f"{model_path} has sha256 {actual[:12]}… but the manifest says {manifest.sha256[:12]}…: "
            "the file was changed without re-registering it. Register it again "
            "(`python -m app register`) or restore the registered file (`make model` for the default)."
        )
    errors, warnings = compare_libraries(manifest.libraries, library_versions())
    for text in warnings:
        log.warning("model %s v%s library version differs: %s", manifest.name, manifest.version, text)
    if errors:
        text = "; ".join(errors)
        if not allow_version_mismatch:
            raise ModelDirError(
                f"model {manifest.name} v{manifest.version} was pickled with other library versions "
                f"than this runtime has, which breaks loading: {text}. {FIX} "
                "(ALLOW_VERSION_MISMATCH=true tries anyway.)"
            )
        log.warning("loading despite library mismatch (ALLOW_VERSION_MISMATCH): %s", text)
    return manifest
