"""`python -m app selftest`: what an image runs to prove it can serve: load the model (sha256,
library versions, init(), a trial row), then score a fixed set of readings through the same path as
the module and print one JSON line each. Two images that print the same lines predict the same.

The header also names the installed version of every package requirements/script.txt asks for (the scoring
script's own, see `python -m app script-deps`), and the selftest fails if one is missing or the wrong version.
"""

from __future__ import annotations

import io
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from app.commands.score_file import score_file
from app.commands.script_deps import REPO_ROOT, parse_requirement, requirement_lines, satisfies
from app.model.modeldir import library_versions, read_manifest
from app.settings import Settings

# Fixed readings spanning the sensor's range, with anomalies of both kinds, a bad message included.
READINGS: list[Any] = [
    {"machine": {"temperature": t, "pressure": p}, "ambient": {"temperature": a, "humidity": h}, "timeCreated": f"selftest-{i}"}
    for i, (t, p, a, h) in enumerate(
        [
            (21.0, 1.0, 21.0, 25),
            (35.5, 2.7, 20.6, 24),
            (50.2, 4.3, 21.4, 26),
            (64.8, 5.9, 20.9, 25),
            (79.9, 7.7, 21.2, 24),
            (99.0, 9.9, 21.0, 25),
            (60.0, 9.8, 21.0, 25),
            (40.0, 0.5, 21.0, 24),
            (45.0, 3.6, 33.5, 26),
        ]
    )
] + ["not json"]

# Where the images put requirements/script.txt (the Dockerfiles' final stage); absent in a development tree, where
# the repository's own is read instead.
SCRIPT_REQUIREMENTS = Path("/app/requirements/script.txt")
REPO_SCRIPT_REQUIREMENTS = REPO_ROOT / "requirements" / "script.txt"


class ScriptPackagesError(ValueError):
    """A package requirements/script.txt asks for is not installed, or not in a version it allows."""


def script_requirements_file() -> Path | None:
    for path in (SCRIPT_REQUIREMENTS, REPO_SCRIPT_REQUIREMENTS):
        if path.is_file():
            return path
    return None


def check_script_packages(path: Path | None) -> tuple[dict[str, str | None], list[str]]:
    """name -> installed version (None: not installed) for each requirement of the file, and what is wrong.

    Checked: presence, and the version against the specifier (==, !=, <=, >=, <, >, ~=, ===, .*) with
    script_deps.satisfies, as `packaging` is not in the image. A requirement with an environment marker is reported
    but not required (markers are not evaluated); option lines (-r, --index-url...) and bare URLs or paths are not
    packages and are skipped."""
    packages: dict[str, str | None] = {}
    problems: list[str] = []
    if path is None:
        return packages, problems
    for line in requirement_lines(path.read_text()):
        requirement = parse_requirement(line)
        if requirement is None:
            continue
        try:
            version: str | None = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            version = None
        packages[requirement.name] = version
        if requirement.marker:
            continue
        if version is None:
            problems.append(f"{requirement.name} is not installed ({path}: {line})")
            continue
        try:
            fits = satisfies(version, requirement.specifier)
        except ValueError as exc:
            problems.append(f"{requirement.name} {version}: cannot check {line!r} ({exc})")
            continue
        if not fits:
            problems.append(f"{requirement.name} {version} is installed, {path} asks for {line}")
    return packages, problems


async def selftest(settings: Settings, out: BinaryIO = sys.stdout.buffer) -> dict[str, Any]:
    manifest = read_manifest(Path(settings.model_dir))
    header = {
        "model": manifest.name,
        "modelVersion": manifest.version,
        "sha256": manifest.sha256,
        "libraries": library_versions(),
    }
    packages, problems = check_script_packages(script_requirements_file())
    header["scriptPackages"] = packages
    out.write(orjson.dumps(header) + b"\n")
    if problems:
        # Before scoring: a script missing its packages would fail there with a less direct message.
        raise ScriptPackagesError("requirements/script.txt is not satisfied: " + "; ".join(problems))
    lines = b"\n".join(r.encode() if isinstance(r, str) else orjson.dumps(r) for r in READINGS) + b"\n"
    return await score_file(settings, io.BytesIO(lines), out)
