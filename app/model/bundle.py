"""A model bundle: one tar.gz of a registered model directory (model.json + its files), the unit a
fleet downloads; and its safe unpacking.

Writing verifies the directory first (every file against its sha256) and is reproducible: the same
directory gives the same bytes (sorted names, zero times and owners), so the same model has one sha256.

Unpacking trusts nothing in the archive, although its sha256 was checked: regular files and folders
only (no links, devices or fifos), relative names that stay inside the target (`path_problem`),
no name twice, and bounds on the number of entries and on the bytes they unpack to (a gzip bomb is
cut off at the bound, not after). The result is then verified as any model directory is.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from app.model.modeldir import MANIFEST_FILE, MAX_FILES, Manifest, ModelDirError, path_problem, verify_model_dir

CHUNK = 1 << 20


class BundleError(ModelDirError):
    """The archive cannot become a model directory; the message says why."""


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    sha256: str
    size: int
    manifest: Manifest


def _add(tar: tarfile.TarFile, name: str, data: io.BufferedIOBase | None, size: int, folder: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if folder:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    tar.addfile(info, data)


def write_bundle(model_dir: Path | str, out: Path | str) -> BundleInfo:
    """Verify `model_dir` and write it as one tar.gz at `out`; its sha256 and size."""
    model_dir, out = Path(model_dir), Path(out)
    manifest = verify_model_dir(model_dir, allow_version_mismatch=True)  # versions are the device's to judge
    names = sorted(manifest.files)
    folders = sorted({"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)})
    tmp = out.with_name(f".{out.name}.tmp")
    # mtime=0 in the gzip header too: the same directory, the same bytes, the same sha256
    with (
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        manifest_bytes = (model_dir / MANIFEST_FILE).read_bytes()
        _add(tar, MANIFEST_FILE, io.BytesIO(manifest_bytes), len(manifest_bytes))
        for folder in folders:
            _add(tar, folder, None, 0, folder=True)
        for name in names:
            path = model_dir / name
            with open(path, "rb") as f:
                _add(tar, name, f, os.fstat(f.fileno()).st_size)
    with open(tmp, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    tmp.replace(out)
    return BundleInfo(out, digest, out.stat().st_size, manifest)


def unpack_bundle(archive: Path | str, target: Path | str, *, max_bytes: int, max_files: int = MAX_FILES) -> Manifest:
    """Unpack `archive` into the new folder `target` and verify it as a model directory; on any problem
    BundleError (or ModelDirError) and `target` is removed."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True)
    try:
        _unpack(archive, target, max_bytes, max_files)
        return verify_model_dir(target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _unpack(archive: Path, target: Path, max_bytes: int, max_files: int) -> None:
    total, seen = 0, set()
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for entry in tar:  # streamed: members are judged one by one, before anything is written
                name = entry.name.rstrip("/") if entry.isdir() else entry.name
                why = path_problem(name)
                if why:
                    raise BundleError(f"bundle entry {name[:200]!r}: the name {why}")
                if name in seen:
                    raise BundleError(f"bundle entry {name!r} appears twice")
                seen.add(name)
                if len(seen) > max_files:
                    raise BundleError(f"the bundle has more than {max_files:,} entries")
                path = target / name
                if entry.isdir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                if not entry.isreg():
                    kind = "a link" if entry.issym() or entry.islnk() else "a device or fifo"
                    raise BundleError(f"bundle entry {name!r} is {kind}; a bundle holds regular files and folders only")
                total += entry.size
                if total > max_bytes:
                    raise BundleError(f"the bundle unpacks to more than {max_bytes:,} bytes")
                path.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(entry)
                assert source is not None  # a regular file
                with open(path, "xb") as f:  # "x": never through something already there
                    left = entry.size
                    while left:
                        chunk = source.read(min(CHUNK, left))
                        if not chunk:
                            raise BundleError(f"bundle entry {name!r} is cut short")
                        f.write(chunk)
                        left -= len(chunk)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"the bundle is not a readable tar.gz: {type(exc).__name__}: {exc}") from None
    if MANIFEST_FILE not in seen:
        raise BundleError(f"the bundle holds no {MANIFEST_FILE}: make it with `python -m app bundle MODEL_DIR`")
