"""`python -m localedge publish BUNDLE`: a model bundle into the running edge's blob store, and the desired
`model` that rolls it out.

The edge (its control socket) puts the bundle in its blob store under the bundle's file name and answers
with a read SAS URL and the desired document `{"model": {"name", "version", "url", "sha256", "size"}}`,
name and version read from the bundle's own manifest (the bundle is unpacked and verified first: what
cannot be rolled out is refused here, not on the device). `--fault` publishes it under a name of its own
(`<blob>.<fault>`) whose downloads meet that fault, so the good blob stays good.

The URL carries a SAS token of the run's throwaway storage key: printed for the user, never logged.
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
from pathlib import Path
from typing import Any

from app.model.bundle import unpack_bundle
from localedge.blobstore import BlobStore, Fault
from localedge.errors import EdgeError

COMMAND = "publish"
UNPACK_LIMIT = 4 * 512 * 1024 * 1024  # the module's own default bound (MODEL_DOWNLOAD_MAX_BYTES x 4)
SLOW_BYTES_PER_S = 4096.0
FAULTS = ("slow", "truncated", "corrupt", "reset", "expired")


def _fault(kind: str, size: int) -> Fault | None:
    """The blob store's fault for a CLI name (`expired` is the SAS's, not the blob's). A cut connection ends each
    try after a tenth of the bundle: a download resumes where the last try stopped, so it fails only when its
    tries (MODEL_DOWNLOAD_ATTEMPTS, 5 by default) run out first."""
    tenth = max(1, size // 10)
    return {
        "slow": Fault("slow", rate=SLOW_BYTES_PER_S),
        "truncated": Fault("truncate", after=tenth),
        "reset": Fault("reset", after=tenth),
        "corrupt": Fault("corrupt"),
    }.get(kind)


def publish(store: BlobStore, bundle: Path, expiry_s: float, fault: str | None, module: str) -> dict[str, Any]:
    """Put `bundle` in `store`; its SAS URL, the desired `model` naming it and the command that sets it."""
    if fault is not None and fault not in FAULTS:
        raise EdgeError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
    if not bundle.is_file():
        raise EdgeError(f"{bundle}: no such bundle (make one with: python -m app bundle MODEL_DIR --out FILE)")
    with tempfile.TemporaryDirectory(prefix="localedge-publish-") as scratch:
        manifest = unpack_bundle(bundle, Path(scratch) / "model", max_bytes=UNPACK_LIMIT)
    data = bundle.read_bytes()
    blob = bundle.name if fault is None else f"{bundle.name}.{fault}"
    sha256 = store.put(blob, data)
    store.fault(blob, _fault(fault, len(data)) if fault else None)
    url = store.sas_url(blob, expires_in=-60.0 if fault == "expired" else expiry_s)
    desired = {"model": {"name": manifest.name, "version": manifest.version, "url": url, "sha256": sha256, "size": len(data)}}
    return {
        "blob": blob,
        "url": url,
        "desired": desired,
        "command": f"python -m localedge desired {module} {shlex.quote(json.dumps(desired))}",
    }


def add_parser(sub: Any) -> None:
    p = sub.add_parser(COMMAND, help="put a model bundle in the running edge's blob store; prints its SAS URL and desired line")
    p.add_argument("bundle", type=Path, help="a bundle from: python -m app bundle MODEL_DIR --out FILE")
    p.add_argument("--expiry", type=float, default=3600.0, metavar="S", help="the SAS URL is valid S seconds (default 3600)")
    p.add_argument("--fault", choices=FAULTS, default=None, help="serve it with a download fault (a blob of its own)")
    p.add_argument("--module", default="inference", help="the module the desired line is for (default inference)")
    p.add_argument("--edge", default=None, metavar="NAME", help="the edge to reach (default: the only one running)")


def request_of(args: argparse.Namespace) -> dict[str, Any]:
    """The control request for `publish` (the bundle's absolute path: the edge may run in another folder)."""
    return {
        "command": COMMAND,
        "bundle": str(args.bundle.resolve()),
        "expiry_s": args.expiry,
        "fault": args.fault,
        "module": args.module,
    }


def show(answer: dict[str, Any]) -> str:
    return f"url: {answer['url']}\n{answer['command']}"
