"""Lock files with hashes for the images' pip installs (`make lock`), or check they are current (`--check`):

    .venv/bin/python images/lock.py [--platform amd64|arm64v8|arm32v7 ...] [--upgrade] [--index-url URL]
    .venv/bin/python images/lock.py --check     # offline: are the locks up to date with their inputs?

Writes, under requirements/lock/:
  runtime-<platform>.txt  everything requirements/runtime.txt (with model.txt) brings, transitive dependencies
                          included, pinned to one file each: `name==version --hash=sha256:...`. The model stack (and
                          ONNX Runtime), and any python3-* package the Dockerfile installs with apt, is Debian's: left out.
  script-<platform>.txt   what requirements/script.txt adds on top of that runtime lock (which it may not change).
  build.txt               what pip needs to build the sdists among them (pure-Python ones only, such as paho-mqtt
                          1.6.1): installed first, so that the images build those with --no-build-isolation from
                          hashed files too, instead of whatever setuptools the index has that day.
The Dockerfiles install them with `pip install --require-hashes`, so two builds of one commit install the same bytes.

Like pip-compile, a new run keeps the previous lock's versions where they still fit and changes only what the
requirement files changed (so an unchanged input gives an unchanged lock); --upgrade takes the newest that fit.

How: pip resolves for the target platform (`pip install --dry-run --report --only-binary=:all: --platform ...
--python-version 3.13`) against an empty environment that holds only stand-ins for what the image already has
(Debian's packages; the runtime lock, for the script lock); every chosen file is then downloaded
(`pip download --no-deps --require-hashes` with the new lock, so pip checks it) and its sha256 computed here and
compared with the index's. pip evaluates environment markers as on this machine; the closure is therefore walked
again here with the target's markers (Debian trixie's CPython 3.13.5 on that architecture): a package pip left out
that the target needs is an error, one only this machine needs is dropped. An sdist-only requirement is built into a
wheel here, must come out pure Python (the images have no compiler), and is locked as the sdist.

Only the index is used (PyPI, or an http(s) mirror given with --index-url or PIP_INDEX_URL): pip's config files and
find-links of this machine are ignored, as the image builds cannot see them.

Each file's header records a digest of its inputs; `--check` (run by images/build.sh before building, and by the
tests) recomputes it without the network. Exit status: 0 ok; 1 a lock could not be made, or (--check) is stale;
2 bad arguments; 3 pip failed to reach the index.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_script_deps import (  # a script beside this one, not a package
    AMD64_TAGS,
    ARMV7_TAGS,
    PYTHON,
    InvalidRequirement,
    Requirement,
    canonicalize_name,
    debian_packages,
    image_markers,
    manylinux_tags,
    model_pins,
    requirement_lines,
)

try:
    from packaging.markers import UndefinedEnvironmentName
except ImportError:  # pip's vendored copy, as in check_script_deps
    from pip._vendor.packaging.markers import UndefinedEnvironmentName  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
LOCK_DIR = REQUIREMENTS / "lock"
FORMAT = "1"  # part of every digest: a change to what this script writes makes all locks stale
OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3
DEFAULT_INDEX = "https://pypi.org/simple"


@dataclass(frozen=True)
class Platform:
    name: str
    oci: str
    machine: str
    tags: list[str]
    dockerfile: str

    def pip_options(self) -> list[str]:
        return [*PYTHON, *(option for tag in self.tags for option in ("--platform", tag))]

    def markers(self, extra: str = "") -> dict[str, str]:
        return image_markers(self.machine, extra)


PLATFORMS = {
    "amd64": Platform(
        "amd64", "linux/amd64", "x86_64",
        AMD64_TAGS,
        "Dockerfile",
    ),
    "arm64v8": Platform(
        "arm64v8", "linux/arm64", "aarch64", manylinux_tags("aarch64", 17, ["manylinux2014_aarch64"]),
        "Dockerfile.arm64v8",
    ),
    "arm32v7": Platform(
        "arm32v7", "linux/arm/v7", "armv7l", ARMV7_TAGS,
        "Dockerfile.arm32v7",
    ),
}  # fmt: skip


class LockError(Exception):
    pass


class Unreachable(LockError):
    pass


@dataclass
class Pin:
    name: str  # canonical
    version: str
    filename: str
    sha256: str
    url: str
    needed_by: str  # "" for a requirement of the file itself

    def line(self) -> str:
        via = f"  # {self.filename}" + (f", for {self.needed_by}" if self.needed_by else "")
        return f"{self.name}=={self.version} \\\n    --hash=sha256:{self.sha256}{via}"


# --- pip, on its own ---------------------------------------------------------------------------------------------


def pip_env() -> dict[str, str]:
    """This machine's pip configuration is left out (find-links, file:// indexes, constraints the builds cannot
    see); its CA bundle is kept so that a TLS-inspecting proxy still works."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if "PIP_CERT" not in env:
        for bundle in ("/etc/ssl/certs/ca-certificates.crt",):
            if Path(bundle).is_file():
                env["PIP_CERT"] = bundle
    return env


def pip(args: list[str], index: str, what: str, python: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`pip <command> --index-url INDEX ...args`, against the stand-in environment `python` if given."""
    command = [sys.executable, "-m", "pip", *(["--python", str(python)] if python else []), args[0]]
    command += ["--index-url", index, "--retries", "3", "--timeout", "60", *args[1:]]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=pip_env(), timeout=900, check=False)
    except subprocess.TimeoutExpired:
        raise Unreachable(f"{what}: pip did not finish in 900 s") from None
    if done.returncode != 0 and re.search(r"(NewConnectionError|Max retries exceeded|SSLError|ProxyError)", done.stderr):
        raise Unreachable(f"{what}: pip could not reach {index}:\n{_tail(done.stderr)}")
    return done


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- inputs and digests ------------------------------------------------------------------------------------------


def requirement_file_lines(path: Path, seen: set[Path] | None = None) -> list[str]:
    """Requirement lines, comments dropped, `-r other.txt` expanded (as pip reads them)."""
    seen = seen or set()
    if path in seen:
        return []
    seen.add(path)
    lines = []
    for line in requirement_lines(path.read_text()):
        match = re.fullmatch(r"(?:-r|--requirement)\s*=?\s*(\S+)", line)
        if match:
            lines += requirement_file_lines((path.parent / match.group(1)).resolve(), seen)
        else:
            lines.append(line)
    return lines


def debian_provided(platform: Platform) -> dict[str, str]:
    """Canonical name -> version of the Python packages the image has from apt before pip runs (all three images
    take the model stack from Debian)."""
    provided = dict(model_pins(REQUIREMENTS / "model.txt"))
    for name, deb in debian_packages(ROOT / platform.dockerfile).items():
        if deb.version is None:
            raise LockError(
                f"{platform.dockerfile} installs {deb.package} from apt without a version images/lock.py can know: "
                f"pin it there (python3-x='1.2.3-*') or add it to TRIXIE in images/check_script_deps.py"
            )
        provided.setdefault(name, deb.version)
    return dict(sorted(provided.items()))


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps([FORMAT, *parts], sort_keys=True).encode()).hexdigest()


def runtime_inputs(platform: Platform) -> str:
    return digest("runtime", platform.name, requirement_file_lines(REQUIREMENTS / "runtime.txt"), debian_provided(platform))


def script_inputs(platform: Platform, runtime_lock: str) -> str:
    lines = requirement_file_lines(REQUIREMENTS / "script.txt")
    return digest("script", platform.name, lines, pins_of(runtime_lock), debian_provided(platform))


def build_inputs(locks: dict[str, str]) -> str:
    sdists = sorted({f"{n}=={v}" for text in locks.values() for n, v, f in entries_of(text) if not f.endswith(".whl")})
    return digest("build", sdists)


def header_digest(text: str) -> str | None:
    match = re.search(r"^# inputs: sha256:([0-9a-f]{64})$", text, re.MULTILINE)
    return match.group(1) if match else None


def entries_of(text: str) -> list[tuple[str, str, str]]:
    """(name, version, filename) of each pin of a lock file."""
    return re.findall(r"^([a-z0-9][a-z0-9.-]*)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}  # (\S+?)(?:,|$)", text, re.M)


def pins_of(text: str) -> dict[str, str]:
    return {name: version for name, version, _ in entries_of(text)}


# --- resolving ---------------------------------------------------------------------------------------------------


def stub_environment(where: Path, installed: dict[str, str]) -> Path:
    """An interpreter whose site-packages holds only metadata stand-ins for what the image already has: pip takes
    those as installed (no download, no lock line) and everything else is resolved from nothing."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = next(where.glob("lib/python3*/site-packages"))
    for name, version in installed.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("images/lock.py stand-in\n")
    return where / "bin" / "python"


def build_pure_wheel(spec: str, index: str, work: Path) -> tuple[Path, Path]:
    """An sdist-only requirement: its sdist, and the wheel built from it here, which must be pure Python."""
    sdists, wheels = work / "sdists", work / "wheelhouse"
    before = set(sdists.glob("*")) if sdists.exists() else set()
    done = pip(["download", "--no-deps", "--no-binary=:all:", "--dest", str(sdists), spec], index, f"sdist of {spec}")
    fetched = sorted(set(sdists.glob("*")) - before)
    if done.returncode != 0 or not fetched:
        raise LockError(f"{spec}: neither a wheel for the platform nor an sdist:\n{_tail(done.stderr)}")
    sdist = fetched[0]
    built = work / "built" / sdist.name
    done = pip(["wheel", "--no-deps", "--wheel-dir", str(built), str(sdist)], index, f"building {sdist.name}")
    wheel = next(iter(sorted(built.glob("*.whl"))), None) if done.returncode == 0 else None
    if wheel is None:
        raise LockError(f"{sdist.name} does not build here:\n{_tail(done.stderr)}")
    if not wheel.name.endswith("-none-any.whl"):
        raise LockError(f"{sdist.name} builds {wheel.name}: compiled, and the images have no compiler")
    wheels.mkdir(parents=True, exist_ok=True)
    wheel.rename(wheels / wheel.name)
    return sdist, wheels / wheel.name


def build_requires(sdist: Path) -> list[str]:
    """build-system.requires of an sdist; what pip assumes when it has no pyproject.toml."""
    with tarfile.open(sdist) as tar:
        member = next((m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml")), None)
        if member is None:
            return ["setuptools>=40.8.0", "wheel"]
        data = tar.extractfile(member)
        text = data.read().decode() if data else ""
    import tomllib

    requires = tomllib.loads(text).get("build-system", {}).get("requires")
    return list(requires) if requires is not None else ["setuptools>=40.8.0", "wheel"]


@dataclass
class Resolved:
    pins: list[Pin]
    sdists: dict[str, Path]  # canonical name -> sdist file, for the packages locked as sdists


def resolve(
    platform: Platform,
    requirement_files: list[Path],
    installed: dict[str, str],
    constraints: dict[str, str],
    index: str,
    work: Path,
    allow_sdists: bool,
    label: str,
    sdists: dict[str, Path] | None = None,
) -> Resolved:
    if not any(requirement_file_lines(path) for path in requirement_files):
        return Resolved([], {})
    work.mkdir(parents=True, exist_ok=True)
    python = stub_environment(work / "env", installed)
    constraint_file = work / "constraints.txt"
    constraint_file.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
    sdists = dict(sdists or {})
    report = work / "report.json"
    for _attempt in range(20):
        args = ["install", "--dry-run", "--quiet", "--report", str(report),
                "--only-binary=:all:", *platform.pip_options(), "-c", str(constraint_file)]  # fmt: skip
        if (work / "wheelhouse").exists():
            args += ["--find-links", str(work / "wheelhouse")]
        for path in requirement_files:
            args += ["-r", str(path)]
        done = pip(args, index, f"resolving {label} for {platform.name}", python)
        if done.returncode == 0:
            break
        missing = re.search(r"No matching distribution found for (\S+)", done.stderr)
        if not missing or not allow_sdists:
            hint = ""
            if missing:
                hint = " (images/check_script_deps.py says what to do for a package without an armv7 wheel)"
            raise LockError(f"pip could not resolve {label} for {platform.oci}{hint}:\n{_tail(done.stderr)}")
        sdist, wheel = build_pure_wheel(missing.group(1), index, work)
        sdists[canonicalize_name(wheel.name.split("-")[0])] = sdist
    else:
        raise LockError(f"resolving {label} for {platform.name}: too many sdist-only packages")
    items = json.loads(report.read_text())["install"]
    return Resolved(closure(platform, items, installed, sdists, label), sdists)


def resolve_keeping(
    platform: Platform,
    requirement_files: list[Path],
    installed: dict[str, str],
    constraints: dict[str, str],
    previous: dict[str, tuple[str, str]],
    index: str,
    work: Path,
    allow_sdists: bool,
    label: str,
) -> Resolved:
    """Like pip-compile: the previous lock's versions are kept where they still fit (as constraints), except for the
    packages the requirement files name themselves; if they do not fit, everything is resolved afresh."""
    named = set()
    for path in requirement_files:
        for line in requirement_file_lines(path):
            try:
                named.add(canonicalize_name(Requirement(line).name))
            except InvalidRequirement:  # an option line (-c, --index-url ...): names nothing
                continue
    kept = {n: v for n, (v, _) in previous.items() if n not in named and n not in installed and n not in constraints}
    if kept:
        try:
            # pip reports a pinned sdist-only package as a conflict, not as missing: build those first.
            sdists = {}
            for name, (version, file) in previous.items():
                if name in kept and not file.endswith(".whl") and allow_sdists:
                    sdists[name], _ = build_pure_wheel(f"{name}=={version}", index, work / "kept")
            return resolve(
                platform, requirement_files, installed, {**kept, **constraints}, index, work / "kept", allow_sdists, label, sdists
            )
        except Unreachable:
            raise
        except LockError:
            print(f"note: {label} for {platform.name}: the previous lock's versions no longer fit; resolving afresh", flush=True)
    return resolve(platform, requirement_files, installed, constraints, index, work / "fresh", allow_sdists, label)


def closure(platform: Platform, items: list[dict], installed: dict[str, str], sdists: dict[str, Path], label: str) -> list[Pin]:
    """Walk pip's answer again from the requested packages with the target's markers."""
    by_name = {canonicalize_name(i["metadata"]["name"]): i for i in items}
    queue: list[tuple[str, set[str], str]] = [
        (name, set(i.get("requested_extras") or []), "") for name, i in by_name.items() if i.get("requested")
    ]
    reached: dict[str, str] = {}
    extras_done: dict[str, set[str]] = {}
    while queue:
        name, extras, needed_by = queue.pop(0)
        if name in installed:
            continue
        item = by_name.get(name)
        if item is None:
            raise LockError(
                f"{platform.oci} needs {name} (for {needed_by or label}) but pip, which evaluates markers as on this "
                f"machine, did not resolve it: add `{name}` to requirements/{label}.txt"
            )
        if name in reached and extras <= extras_done[name]:
            continue
        reached.setdefault(name, needed_by)
        extras_done.setdefault(name, set()).update(extras)
        for line in item["metadata"].get("requires_dist") or []:
            dependency = Requirement(line)
            if dependency.marker is not None:
                try:
                    applies = any(dependency.marker.evaluate(platform.markers(e)) for e in {"", *extras})
                except UndefinedEnvironmentName:
                    applies = True
                if not applies:
                    continue
            queue.append((canonicalize_name(dependency.name), set(dependency.extras), name))
    pins = []
    for name, needed_by in sorted(reached.items()):
        item = by_name[name]
        info = item["download_info"]
        if name in sdists:
            filename, url, sha = sdists[name].name, "", ""
        else:
            url = info["url"]
            filename = url.rsplit("/", 1)[-1]
            sha = (info.get("archive_info") or {}).get("hashes", {}).get("sha256", "")
        pins.append(Pin(name, item["metadata"]["version"], filename, sha, url, needed_by))
    return pins


def verify_downloads(platform: Platform, pins: list[Pin], sdists: dict[str, Path], index: str, work: Path) -> None:
    """Download every locked file with the lock's hashes (pip checks them), hash each here, compare with the index."""
    if not pins:
        return
    work.mkdir(parents=True, exist_ok=True)
    requirements = work / "verify.txt"
    requirements.write_text(
        "".join(f"{p.name}=={p.version} --hash=sha256:{p.sha256 or '0' * 64}\n" for p in pins if p.name not in sdists)
    )
    dest = work / "files"
    if requirements.read_text():
        done = pip(["download", "--no-deps", "--require-hashes", "--only-binary=:all:", *platform.pip_options(),
                    "--dest", str(dest), "-r", str(requirements)], index, f"downloading {platform.name}'s wheels")  # fmt: skip
        if done.returncode != 0:
            raise LockError(f"downloading the locked wheels for {platform.oci} failed:\n{_tail(done.stderr)}")
    for pin in pins:
        path = sdists[pin.name] if pin.name in sdists else dest / pin.filename
        if not path.is_file():
            raise LockError(f"{pin.filename} ({pin.name}=={pin.version}) was not downloaded")
        computed = sha256_of(path)
        if pin.sha256 and computed != pin.sha256:
            raise LockError(f"{pin.filename}: sha256 {computed} here, {pin.sha256} at the index")
        pin.sha256 = computed


# --- writing -----------------------------------------------------------------------------------------------------


def render(title: str, platform: str, inputs: str, pins: list[Pin], notes: list[str]) -> str:
    lines = [
        f"# {title}",
        f"# Generated by images/lock.py ({platform}); do not edit: `make lock` regenerates it.",
        *(f"# {note}" for note in notes),
        f"# inputs: sha256:{inputs}",
        "",
    ]
    body = [pin.line() for pin in pins] or ["# (nothing to install)"]
    return "\n".join(lines + body) + "\n"


def previous_pins(path: Path, upgrade: bool) -> dict[str, tuple[str, str]]:
    """name -> (version, file) of the lock there was before."""
    return {} if upgrade or not path.is_file() else {n: (v, f) for n, v, f in entries_of(path.read_text())}


def lock_platform(platform: Platform, index: str, work: Path, log: list[str], upgrade: bool) -> tuple[str, str, dict[str, Path]]:
    debian = debian_provided(platform)
    runtime_path, script_path = paths(platform.name)
    notes_debian = (
        [f"Left out, from Debian's packages in {platform.dockerfile}: " + ", ".join(f"{n} {v}" for n, v in debian.items())]
        if debian
        else []
    )
    runtime = resolve_keeping(platform, [REQUIREMENTS / "runtime.txt"], debian, {}, previous_pins(runtime_path, upgrade),
                              index, work / "runtime", True, "runtime")  # fmt: skip
    verify_downloads(platform, runtime.pins, runtime.sdists, index, work / "runtime")
    runtime_text = render(
        f"requirements/runtime.txt (with model.txt) for {platform.oci}: the first pip layer of {platform.dockerfile}.",
        platform.oci, runtime_inputs(platform), runtime.pins, notes_debian,
    )  # fmt: skip
    locked = {p.name: p.version for p in runtime.pins}
    # The script's packages may add to the runtime but not change it: the runtime lock is installed and pinned.
    constraints = {**model_pins(REQUIREMENTS / "model.txt"), **locked}
    # Wheels only where the Dockerfile installs them so (all three: --only-binary, as images/check_script_deps.py checks).
    script = resolve_keeping(platform, [REQUIREMENTS / "script.txt"], {**debian, **locked}, constraints,
                             previous_pins(script_path, upgrade), index, work / "script", False,
                             "script")  # fmt: skip
    verify_downloads(platform, script.pins, script.sdists, index, work / "script")
    script_text = render(
        f"requirements/script.txt for {platform.oci}, beyond runtime-{platform.name}.txt: the second pip layer.",
        platform.oci, script_inputs(platform, runtime_text), script.pins, notes_debian,
    )  # fmt: skip
    log.append(f"{platform.name}: runtime {len(runtime.pins)} pins, script {len(script.pins)}")
    return runtime_text, script_text, {**runtime.sdists, **script.sdists}


def lock_build(sdists: dict[str, Path], locks: dict[str, str], index: str, work: Path, upgrade: bool) -> str:
    requires = sorted({r for path in sdists.values() for r in build_requires(path)})
    notes = [f"Builds: {', '.join(sorted(p.name for p in sdists.values())) or 'nothing'}; build-system.requires: "
             f"{', '.join(requires) or 'none'}. Pure Python, the same for every platform."]  # fmt: skip
    pins: list[Pin] = []
    if requires:
        work.mkdir(parents=True, exist_ok=True)
        (work / "build.in").write_text("".join(f"{r}\n" for r in requires))
        previous = previous_pins(LOCK_DIR / "build.txt", upgrade)
        resolved = resolve_keeping(PLATFORMS["amd64"], [work / "build.in"], {}, {}, previous, index, work, False, "build")
        impure = [p.filename for p in resolved.pins if not p.filename.endswith("-none-any.whl")]
        if impure:
            raise LockError(f"build requirements must be pure Python to serve every platform: {impure}")
        verify_downloads(PLATFORMS["amd64"], resolved.pins, {}, index, work / "verify")
        pins = resolved.pins
    return render("Build requirements of the sdists in the runtime and script locks (pip --no-build-isolation).",
                  "any platform", build_inputs(locks), pins, notes)  # fmt: skip


def paths(platform: str) -> tuple[Path, Path]:
    return LOCK_DIR / f"runtime-{platform}.txt", LOCK_DIR / f"script-{platform}.txt"


def check() -> int:
    """Offline: every lock exists and its recorded inputs digest matches the inputs now."""
    stale = []
    locks = {}
    for platform in PLATFORMS.values():
        runtime_path, script_path = paths(platform.name)
        if not runtime_path.is_file() or not script_path.is_file():
            stale.append(f"{runtime_path.name} / {script_path.name}: missing")
            continue
        runtime_text, script_text = runtime_path.read_text(), script_path.read_text()
        locks[runtime_path.name], locks[script_path.name] = runtime_text, script_text
        if header_digest(runtime_text) != runtime_inputs(platform):
            stale.append(f"{runtime_path.name}: requirements/runtime.txt or model.txt changed since it was made")
        if header_digest(script_text) != script_inputs(platform, runtime_text):
            stale.append(f"{script_path.name}: requirements/script.txt or the runtime lock changed since it was made")
    build_path = LOCK_DIR / "build.txt"
    if not build_path.is_file():
        stale.append("build.txt: missing")
    elif len(locks) == 2 * len(PLATFORMS) and header_digest(build_path.read_text()) != build_inputs(locks):
        stale.append("build.txt: the set of sdists changed since it was made")
    for line in stale:
        print(f"stale: requirements/lock/{line}")
    if stale:
        print("run `make lock` (.venv/bin/python images/lock.py) and commit requirements/lock/")
        return FAILED
    print(f"requirements/lock/: {len(locks) + 1} lock files up to date with their inputs")
    return OK


def differences(locks: dict[str, str]) -> list[str]:
    """Packages locked at different versions on different platforms (the selftest compares their predictions)."""
    versions: dict[str, dict[str, str]] = {}
    for platform in PLATFORMS:
        for kind in ("runtime", "script"):
            for name, version in pins_of(locks.get(f"{kind}-{platform}.txt", "")).items():
                versions.setdefault(name, {})[platform] = version
    return [f"{n}: {v}" for n, v in sorted(versions.items()) if len(set(v.values())) > 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only check the locks are current (offline)")
    parser.add_argument("--upgrade", action="store_true", help="newest versions that fit, not the previous lock's")
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORMS), help="lock these only (default all)")
    parser.add_argument(
        "--index-url", default=None, help=f"http(s) index (default PIP_INDEX_URL if http(s), else {DEFAULT_INDEX})"
    )
    args = parser.parse_args(argv)
    if args.check:
        try:
            return check()
        except LockError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return FAILED
    if sys.version_info[:2] != (3, 11):
        # The dev venv's interpreter: pip evaluates markers with it, the closure is walked again with the images' 3.13.
        print("error: run images/lock.py with the dev virtualenv's CPython 3.11 (.venv/bin/python)", file=sys.stderr)
        return USAGE
    env_index = os.environ.get("PIP_INDEX_URL", "")
    index = args.index_url or (env_index if env_index.startswith(("http://", "https://")) else DEFAULT_INDEX)
    chosen = args.platform or list(PLATFORMS)
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="images-lock-") as tmp:
            sdists: dict[str, Path] = {}
            for name in chosen:
                print(f"== locking {name} ({PLATFORMS[name].oci}) from {index}", flush=True)
                runtime_text, script_text, found = lock_platform(PLATFORMS[name], index, Path(tmp) / name, log, args.upgrade)
                runtime_path, script_path = paths(name)
                runtime_path.write_text(runtime_text)
                script_path.write_text(script_text)
                sdists.update(found)
            locks = {p.name: p.read_text() for n in PLATFORMS for p in paths(n) if p.is_file()}
            if len(locks) == 2 * len(PLATFORMS):
                # Every lock's sdists: those of platforms not locked now are fetched again to read their build needs.
                for text in locks.values():
                    for n, v, f in entries_of(text):
                        if not f.endswith(".whl") and n not in sdists:
                            sdists[n], _ = build_pure_wheel(f"{n}=={v}", index, Path(tmp) / "build-sdists")
                print("== locking the sdists' build requirements", flush=True)
                (LOCK_DIR / "build.txt").write_text(lock_build(sdists, locks, index, Path(tmp) / "build", args.upgrade))
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return UNREACHABLE
    except LockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    for line in log:
        print(line)
    for line in differences({p.name: p.read_text() for n in PLATFORMS for p in paths(n) if p.is_file()}):
        print(f"note: not the same version on every platform: {line}")
    return check()


if __name__ == "__main__":
    sys.exit(main())
