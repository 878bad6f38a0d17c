"""The model directory: the model's files plus the manifest model.json, and the checks made before unpickling.

The files keep the names and the layout they were registered with, as Azure ML lays a registered model
out under AZUREML_MODEL_DIR: one file (`sklearn_regression_model.pkl`) or a folder of several
(`model/sklearn_regression_model.pkl`, `model/scaler.json`, ...), so an Azure ML score.py finds them
where it looks. Our own models are one file, `model.pkl`.

The manifest is what Azure ML's Model.register kept in the cloud (name, version, tags, description),
plus what the edge needs to load the model safely: the sha256 of every file (`files`), the main model
file the built-in score.py loads (`file`, with its sha256 in `sha256`), and the versions of the
libraries it was pickled with. Pickles do not cross scikit-learn minor versions, nor go from numpy 2 back to
numpy 1, so such a mismatch is refused with the versions and the fix, never left to fail deep inside unpickling.

A directory without model.json (an Azure ML model downloaded as is) can be used when the caller allows
it (`verify_model_dir(..., require_manifest=False)`): its files are hashed as found, so the module can
report what it runs, but nothing registered says what they should be. Azure ML puts no metadata file
beside a downloaded model, so the name and version come from the folder names only:
- `.../<name>/<version>/` (all digits): the layout of a deployment's AZUREML_MODEL_DIR
  (`/var/azureml-app/azureml-models/<name>/<version>`) and of the v1 SDK's cache
  (`Model.get_model_path`: `azureml-models/<name>/<version>/`) -> that name and version;
- any other folder, e.g. `<download-path>/<name>/` from `az ml model download` / `ml_client.models.download`
  (v2), or the target_dir of the v1 SDK's `Model.download` -> the folder's name, version 0 (unknown).
In every case the folder holds the registered file itself, or the registered folder by its name.

The directory digest (`directory_digest`) names several files with one sha256: the sha256 of the UTF-8
text made of one line `<relative posix path>\\0<sha256 hex>\\n` per file, sorted by path (Python's
string order, the same as UTF-8 byte order).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST_FILE = "model.json"
MODEL_FILE = "model.pkl"
# Top-level names in a model directory that are not the model's: its manifest and register's staging folders.
STAGING_PREFIX = ".register-"
# The extensions of a main model file the built-in score.py can load (joblib.load reads both).
PICKLE_SUFFIXES = (".pkl", ".joblib")
# What the built-in score.py runs a model with (the manifest's `engine`).
ENGINE_SKLEARN, ENGINE_ONNX = "sklearn", "onnx"
# Bounds of a model directory: more files, or more bytes in all, are refused (by register and by verify).
# 10,000 files is far beyond any registered model (Azure ML MLflow folders hold a handful); 8 GiB is more
# than an IoT Edge device can hold in memory to unpickle, and bounds the time hashing takes at start.
MAX_FILES = 10_000
MAX_TOTAL_BYTES = 8 << 30
# How many names a message lists before "and N more".
SHOWN_NAMES = 20
# The libraries whose versions decide whether a pickle loads and predicts the same.
TRACKED_LIBRARIES = ("numpy", "scipy", "scikit-learn", "joblib", "threadpoolctl")
# The libraries a refusal names, the ones whose versions decide whether a pickle loads at all.
DECISIVE_LIBRARIES = ("numpy", "scikit-learn")
FIX = (
    "Fix: retrain the model with this runtime's versions and register it: `python -m app register MODEL.pkl "
    "--model-dir DIR --name NAME --features ...` in this project's virtualenv (requirements/model.txt); "
    "`make model` retrains the default model. Registering the old pickle again does not help: the pickle itself "
    "cannot be read here. A model newer than this image: rebuild the image with the versions in requirements/model.txt."
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_VERSION_DIR = re.compile(r"[0-9]{1,9}")


class ModelDirError(RuntimeError):
    """The model directory cannot be used; the message says why and how to fix it."""


@dataclass
class Manifest:
    """What model.json says, or (verified=False, no model.json) what the directory holds.

    features: dotted paths into a reading, one per column of the built-in score.py's rows. May be empty:
        an Azure ML score.py takes the raw JSON and needs none. Whoever uses the manifest decides whether
        it needs them (register requires them unless told otherwise; the built-in script cannot go without).
    sha256: the main model file's sha256 (`file`); without a main file (`file` == ""), the directory digest
        of `files`. Built from a directory without model.json: its only file's sha256, or the directory
        digest when it holds several files.
    file: the main model file, a relative posix path ("" if none): the one the built-in score.py loads.
    files: every file of the model, relative posix path -> sha256. An older manifest without it reads as
        listing its one `file`.
    engine: what the built-in score.py runs: "sklearn" (the pickle `file`) or "onnx" (`onnx["file"]` on ONNX
        Runtime; `file` is then the reference pickle the ONNX graph was checked against, or the graph itself
        when there is no pickle). Written only when "onnx".
    onnx: with engine "onnx": {"file": the graph's path, "classes": a classifier's classes in probability order
        (null for a regressor), "converter": "skl2onnx X.Y.Z", "check": the conversion check's figures}.
    verified: True only from verify_model_dir when every file matched model.json. Not written to model.json.
    """

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
    files: dict[str, str] = field(default_factory=dict)
    engine: str = ENGINE_SKLEARN
    onnx: dict[str, Any] | None = None
    verified: bool = False

    @property
    def onnx_file(self) -> str:
        """The ONNX graph's path in the directory, "" when the model has none."""
        return str(self.onnx["file"]) if self.onnx else ""

    def to_json(self) -> str:
        data = asdict(self)
        for key in _NOT_WRITTEN:
            data.pop(key)
        if self.engine == ENGINE_SKLEARN and self.onnx is None:  # a pickle-only manifest reads as it always did
            data.pop("engine")
            data.pop("onnx")
        return json.dumps(data, indent=2, sort_keys=False) + "\n"


# Manifest fields that describe a check made here, never read from or written to model.json.
_NOT_WRITTEN = ("verified",)


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
    """The file's sha256, read once in chunks (big files stream)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def directory_digest(files: Mapping[str, str]) -> str:
    """One sha256 for several files: sha256 over the sorted lines `path\\0sha256\\n` (UTF-8)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{files[path]}\n".encode())
    return digest.hexdigest()


def path_problem(rel: str) -> str | None:
    """Why `rel` cannot name a file of a model directory (a relative posix path inside it), or None."""
    if not isinstance(rel, str) or not rel:
        return "is empty"
    if len(rel) > 4096:
        return "is longer than 4096 characters"
    if "\\" in rel or any(ord(c) < 32 or c == "\x7f" for c in rel):
        return "has a backslash or a control character"
    if rel.startswith("/"):
        return "is absolute"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "has an empty, '.' or '..' part (it must stay inside the model directory)"
    return None


def reserved_name_problem(rel: str) -> str | None:
    """Why `rel` cannot be a model file at the top of a model directory, or None."""
    top = rel.split("/", 1)[0]
    if rel == MANIFEST_FILE:
        return f"is the name of this module's manifest ({MANIFEST_FILE})"
    if top.startswith(STAGING_PREFIX):
        return f"starts with {STAGING_PREFIX}, which register uses for its staging folders"
    return None


def main_file_of(files: Mapping[str, str] | list[str]) -> str:
    """The single *.pkl / *.joblib among the files, or "" when there is none or several."""
    found = [rel for rel in files if rel.lower().endswith(PICKLE_SUFFIXES)]
    return found[0] if len(found) == 1 else ""


def names_text(names: list[str], sep: str = ", ") -> str:
    """`a, b, c` with at most SHOWN_NAMES names, then `and N more`."""
    shown = sep.join(names[:SHOWN_NAMES])
    return shown + (f"{sep}and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


@dataclass
class Scan:
    """The regular files under a directory (symlinks inside it followed), and what cannot be used."""

    files: dict[str, Path] = field(default_factory=dict)  # relative posix path -> path to read
    total_bytes: int = 0
    refused: list[str] = field(default_factory=list)  # "<path>: why", one per entry that cannot be used
    too_many: str = ""  # set when the walk stopped at a bound

    def problems(self) -> list[str]:
        """Every reason the directory cannot be used as a model's files (bounds, refused entries)."""
        found = [self.too_many] if self.too_many else []
        if self.total_bytes > MAX_TOTAL_BYTES:
            found.append(
                f"its files total {self.total_bytes:,} bytes, more than the {MAX_TOTAL_BYTES:,} "
                "a model may have (MAX_TOTAL_BYTES)"
            )
        return found + self.refused


def scan_dir(root: Path, *, model_dir: bool) -> Scan:
    """Walk `root` for a model's files, without reading them; stop at MAX_FILES files or MAX_FILES folders.

    Symlinks are followed when they point inside `root` (the file is used under the link's name) and
    refused when they point outside it, dangle or loop; anything but a regular file or a folder (a fifo,
    a socket, a device) is refused. With model_dir=True the top-level manifest and staging folders are
    not the model's and are skipped.
    """
    scan = Scan()
    real_root = root.resolve()
    folders = 0
    stack: list[tuple[Path, str, tuple[Path, ...]]] = [(root, "", (real_root,))]
    while stack:
        folder, prefix, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            scan.refused.append(f"{prefix or '.'}: cannot be listed ({exc.strerror or exc})")
            continue
        for entry in entries:
            rel = prefix + entry.name
            if model_dir and not prefix and (entry.name == MANIFEST_FILE or entry.name.startswith(STAGING_PREFIX)):
                continue
            why = path_problem(rel)
            if why:
                scan.refused.append(f"{rel!r}: the name {why}")
                continue
            try:
                linked = entry.is_symlink()
                if linked:
                    target = Path(entry.path).resolve()
                    if target != real_root and real_root not in target.parents:
                        scan.refused.append(f"{rel}: a symlink to {target}, outside {root}")
                        continue
                    info = os.stat(entry.path)
                else:
                    info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                scan.refused.append(f"{rel}: a dangling symlink")
                continue
            except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on resolve()
                scan.refused.append(f"{rel}: cannot be read ({exc})")
                continue
            if stat.S_ISDIR(info.st_mode):
                real = Path(entry.path).resolve() if linked else ancestors[-1] / entry.name
                if real in ancestors:
                    scan.refused.append(f"{rel}: a symlink loop (it points at a folder that contains it)")
                    continue
                folders += 1
                if folders > MAX_FILES:
                    scan.too_many = f"it has more than {MAX_FILES:,} folders"
                    return scan
                stack.append((Path(entry.path), rel + "/", (*ancestors, real)))
            elif stat.S_ISREG(info.st_mode):
                scan.files[rel] = Path(entry.path)
                scan.total_bytes += info.st_size
                if len(scan.files) > MAX_FILES:
                    scan.too_many = f"it has more than {MAX_FILES:,} files (MAX_FILES)"
                    return scan
            else:
                scan.refused.append(f"{rel}: a special file ({_kind(info.st_mode)}); a model is regular files and folders")
                if len(scan.refused) > MAX_FILES:
                    scan.too_many = f"it has more than {MAX_FILES:,} entries that are not regular files"
                    return scan
    return scan


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device")):
        if test(mode):
            return kind
    return "a block device" if stat.S_ISBLK(mode) else "not a regular file"


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
    problems = _manifest_problems(raw) or _consistency_problems(raw)
    if problems:
        raise ModelDirError(f"{path}: " + "; ".join(problems) + "; re-register the model to rewrite it")
    known = set(Manifest.__dataclass_fields__) - set(_NOT_WRITTEN)
    manifest = Manifest(**{k: v for k, v in raw.items() if k in known})
    if "files" not in raw:
        manifest.files = {manifest.file: manifest.sha256}  # a manifest from before `files`: its one file
    return manifest


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _is_file_map(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and 0 < len(value) <= MAX_FILES
        and all(
            isinstance(k, str) and path_problem(k) is None and reserved_name_problem(k) is None and _is_sha256(v)
            for k, v in value.items()
        )
    )


# field -> (check, what it must be): a wrong type would otherwise fail later, deep in loading or encoding
_MANIFEST_TYPES: dict[str, tuple[Any, str]] = {
    "name": (lambda v: isinstance(v, str) and 0 < len(v) <= 256, "a string of 1 to 256 characters"),
    "version": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number, 0 or more"),
    "features": (
        lambda v: isinstance(v, list) and len(v) <= 100_000 and all(isinstance(f, str) and f for f in v),
        "a list of dotted paths (empty when the scoring script takes raw JSON)",
    ),
    "sha256": (_is_sha256, "64 hex digits"),
    "libraries": (_is_str_map, "an object of library -> version strings"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "tags": (_is_str_map, "an object of string -> string"),
    "labels": (lambda v: v is None or isinstance(v, list), "a list or null"),
    "file": (
        lambda v: isinstance(v, str) and (v == "" or path_problem(v) is None),
        "a relative path in the directory without '..', or \"\" for none",
    ),
    "created": (lambda v: isinstance(v, str), "a string"),
    "engine": (lambda v: v in (ENGINE_SKLEARN, ENGINE_ONNX), f'"{ENGINE_SKLEARN}" or "{ENGINE_ONNX}"'),
    "onnx": (
        lambda v: (
            v is None
            or (
                isinstance(v, dict)
                and isinstance(v.get("file"), str)
                and path_problem(v["file"]) is None
                and (v.get("classes") is None or isinstance(v.get("classes"), list))
            )
        ),
        'null or an object with "file" (a relative path) and "classes" (a list or null)',
    ),
    "files": (
        _is_file_map,
        f"an object of relative path (inside the directory, no '..', not {MANIFEST_FILE}) -> sha256, 1 to {MAX_FILES:,} files",
    ),
}


def _manifest_problems(raw: dict[str, Any]) -> list[str]:
    """Every field of the manifest that has the wrong type, named."""
    return [f"'{key}' must be {what}" for key, (ok, what) in _MANIFEST_TYPES.items() if key in raw and not ok(raw[key])]


def _consistency_problems(raw: dict[str, Any]) -> list[str]:
    """Fields that are each well typed but contradict each other."""
    file = raw.get("file", MODEL_FILE)
    if "files" not in raw:
        if raw.get("onnx") or raw.get("engine") == ENGINE_ONNX:
            return ["an ONNX model needs 'files'"]
        return [] if file else ["'file' is empty but there is no 'files'"]
    files: dict[str, str] = raw["files"]
    if file and file not in files:
        return [f"'file' {file!r} is not one of 'files'"]
    expected = files[file] if file else directory_digest(files)
    if raw["sha256"] != expected:
        what = "the sha256 of 'file' in 'files'" if file else "the directory digest of 'files'"
        return [f"'sha256' is not {what}"]
    onnx = raw.get("onnx")
    if raw.get("engine") == ENGINE_ONNX and not onnx:
        return ["'engine' is \"onnx\" but there is no 'onnx'"]
    if onnx and onnx["file"] not in files:
        return [f"'onnx' file {onnx['file']!r} is not one of 'files'"]
    return []


def compare_libraries(trained: dict[str, str], running: dict[str, str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for differences between the versions a model was pickled with and ours.

    Errors are the differences known to break loading: scikit-learn's major.minor (a tree pickled with 1.2
    fails in 1.4 with `node array from the pickle has an incompatible dtype`: estimators' internals change
    between minor versions) and a numpy major version newer than ours (numpy 2 pickles need numpy._core).
    Any other difference is a warning, an older numpy major too: numpy 2 reads numpy 1 pickles.
    """
    errors: list[str] = []
    warnings: list[str] = []
    for lib, want in trained.items():
        have = running.get(lib)
        if have is None or have == want:
            continue
        if lib == "python" and want.split(".")[:2] == have.split(".")[:2]:
            continue  # a patch release changes no pickle (Debian's 3.11.2 in the images, a developer's 3.11.7)
        text = f"{lib} {want} (trained) vs {have} (here)"
        if lib == "numpy" and _major(want) > _major(have):
            errors.append(f"{text}: numpy {_major(want)} pickles need numpy {_major(want)} (numpy._core)")
        elif lib == "scikit-learn" and want.split(".")[:2] != have.split(".")[:2]:
            errors.append(f"{text}: scikit-learn does not read its pickles across minor versions")
        else:
            warnings.append(text)
    return errors, warnings


def engine_in_use(manifest: Manifest) -> tuple[str, str]:
    """(engine, warning or "") the built-in score.py runs this model with here; ModelDirError when none can.

    An ONNX model runs on ONNX Runtime; without onnxruntime (no armv7 wheel) it falls back to its reference
    pickle, with a warning, and an ONNX-only model is refused.
    """
    if manifest.engine != ENGINE_ONNX:
        return ENGINE_SKLEARN, ""
    from app.model.onnx_engine import missing_reason  # imports onnxruntime: only for ONNX models

    reason = missing_reason()
    if reason is None:
        return ENGINE_ONNX, ""
    if manifest.file and manifest.file != manifest.onnx_file and manifest.file.lower().endswith(PICKLE_SUFFIXES):
        return ENGINE_SKLEARN, (
            f"model {manifest.name} v{manifest.version} is registered for ONNX Runtime, but {reason}: "
            f"running its reference pickle {manifest.file} with scikit-learn instead (slower per call)"
        )
    raise ModelDirError(
        f"model {manifest.name} v{manifest.version} is ONNX only ({manifest.onnx_file}) and {reason}; this image has "
        "no ONNX Runtime (there is no onnxruntime wheel for arm32v7). Register the model with its pickle too "
        "(`python -m app register model.pkl --onnx ...` without --onnx-only), or run an amd64/arm64v8 image"
    )


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else -1


def stack_text(versions: Mapping[str, str]) -> str:
    """`numpy 2.2.4, scikit-learn 1.4.2`: the decisive libraries' versions in `versions` (those it names)."""
    return ", ".join(f"{lib} {versions[lib]}" for lib in DECISIVE_LIBRARIES if lib in versions)


def pickle_skew_hint(exc: BaseException | None) -> str:
    """A sentence naming this runtime's versions and the fix when `exc` (or what caused it) is how a pickle made with
    another model stack fails to load; "" for any other failure. For pickles no manifest describes (an Azure ML
    model downloaded as is), where compare_libraries has nothing to compare and unpickling is the first to notice."""
    seen = 0
    while exc is not None and seen < 10:
        text = str(exc)
        if "incompatible dtype" in text or "numpy._core" in text or "Trying to unpickle estimator" in text:
            return (
                f" This is how a pickle made with other library versions fails: this runtime has "
                f"{stack_text(library_versions())}. {FIX}"
            )
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return ""


def verify_model_dir(model_dir: Path | str, allow_version_mismatch: bool = False, *, require_manifest: bool = True) -> Manifest:
    """Check the manifest, every file's sha256 and the library versions; return the manifest (verified=True).

    Files in the directory that the manifest does not list are named in a warning, not refused.
    Without model.json: a ModelDirError, unless require_manifest=False; then the manifest is built from
    the directory as found (see the module's docstring), with verified=False and one warning.
    """
    model_dir = Path(model_dir)
    if require_manifest or (model_dir / MANIFEST_FILE).exists() or (model_dir / MANIFEST_FILE).is_symlink():
        manifest = read_manifest(model_dir)
        _check_files(model_dir, manifest)
        _warn_unlisted(model_dir, manifest)
        manifest.verified = True
    else:
        manifest = manifest_from_dir(model_dir)
    running = library_versions()
    errors, warnings = compare_libraries(manifest.libraries, running)
    for text in warnings:
        log.warning("model %s v%s library version differs: %s", manifest.name, manifest.version, text)
    if errors:
        text = "; ".join(errors)
        if not allow_version_mismatch:
            raise ModelDirError(
                f"model {manifest.name} v{manifest.version} cannot be loaded by this runtime: it was pickled with "
                f"{stack_text(manifest.libraries)}, this runtime has {stack_text(running)} (requirements/model.txt); "
                f"{text}. {FIX} (ALLOW_VERSION_MISMATCH=true tries anyway.)"
            )
        log.warning("loading despite library mismatch (ALLOW_VERSION_MISMATCH): %s", text)
    return manifest


def _check_files(model_dir: Path, manifest: Manifest) -> None:
    """Every listed file is there, inside the directory, and has its registered sha256 (each read once)."""
    real_root = model_dir.resolve()
    paths = {rel: model_dir / rel for rel in manifest.files}
    problems: list[str] = []
    total = 0
    present: list[str] = []
    for rel, path in paths.items():
        try:
            info = os.stat(path)
        except OSError:
            problems.append(f"{rel} is missing (listed in {MANIFEST_FILE})")
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(f"{rel} is not a regular file")
            continue
        real = path.resolve()
        if real_root not in real.parents:
            problems.append(f"{rel} leads to {real}, outside the model directory")
            continue
        total += info.st_size
        present.append(rel)
    if total > MAX_TOTAL_BYTES:
        raise ModelDirError(
            f"the files of {model_dir} total {total:,} bytes, more than the {MAX_TOTAL_BYTES:,} a model may have "
            "(MAX_TOTAL_BYTES); register a smaller model"
        )
    for rel in present:
        want = manifest.files[rel]
        have = sha256_of(paths[rel])
        if have != want:
            problems.append(f"{rel} has sha256 {have[:12]}… but the manifest says {want[:12]}…")
    if problems:
        raise ModelDirError(
            f"{model_dir}: {names_text(problems, '; ')}. The files were changed without registering them again: register "
            "the model again (`python -m app register SOURCE --model-dir DIR --name NAME ...`) or restore the "
            "registered files (`make model` for the default model)."
        )


def _warn_unlisted(model_dir: Path, manifest: Manifest) -> None:
    scan = scan_dir(model_dir, model_dir=True)
    unlisted = sorted(set(scan.files) - set(manifest.files))
    extra = unlisted + scan.refused + ([scan.too_many] if scan.too_many else [])
    if extra:
        log.warning(
            "model %s v%s: %d file(s) in %s are not in its %s and were not checked: %s",
            manifest.name,
            manifest.version,
            len(extra),
            model_dir,
            MANIFEST_FILE,
            names_text(extra),
        )


def name_from_layout(model_dir: Path) -> tuple[str, int]:
    """(name, version) from the folder names: `<name>/<version>/` -> both; else the folder's name and 0."""
    real = Path(model_dir).resolve()
    if _VERSION_DIR.fullmatch(real.name) and _NAME.fullmatch(real.parent.name):
        return real.parent.name, int(real.name)
    return (real.name if _NAME.fullmatch(real.name) else "model"), 0


def manifest_from_dir(model_dir: Path) -> Manifest:
    """A manifest for a directory without model.json: its files hashed now, verified=False; logs one warning."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir} is not a directory")
    scan = scan_dir(model_dir, model_dir=True)
    problems = scan.problems()
    if problems:
        raise ModelDirError(f"{model_dir} cannot be used as a model directory: {names_text(problems, '; ')}")
    if not scan.files:
        raise ModelDirError(
            f"{model_dir} holds no files and no {MANIFEST_FILE}: put the model there "
            "(`python -m app register MODEL --model-dir DIR --name NAME ...`)"
        )
    files = {rel: sha256_of(path) for rel, path in scan.files.items()}
    name, version = name_from_layout(model_dir)
    sha256 = next(iter(files.values())) if len(files) == 1 else directory_digest(files)
    manifest = Manifest(
        name=name,
        version=version,
        features=[],
        sha256=sha256,
        libraries={},
        file=main_file_of(files),
        files=files,
        verified=False,
    )
    log.warning(
        "%s has no %s: using its %d file(s) as found (%s %s…) as model %s v%s; nothing registered says what they "
        "should be, so no sha256 check is possible. To get one, register the directory: "
        "`python -m app register %s --model-dir %s --name NAME` (add --features a.b,c.d for the built-in score.py)",
        model_dir,
        MANIFEST_FILE,
        len(files),
        "sha256" if len(files) == 1 else "directory digest",
        sha256[:12],
        name,
        version,
        model_dir,
        model_dir,
    )
    return manifest
