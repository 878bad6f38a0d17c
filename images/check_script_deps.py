"""Can the images install requirements/script.txt? Run by images/build.sh before the builds, or alone:

    .venv/bin/python images/check_script_deps.py [--requirements PATH] [--dockerfile PATH] [--amd64]

The three Dockerfiles install the scoring script's packages with --only-binary=:all: (the images have no compilers),
and PyPI has no armv7 wheels for most compiled packages (pandas, psutil...), the scarcest platform. Without this check
such a package fails the build only after many minutes under emulation. For each requirement, and for what each
needs in turn (read from the wheel's metadata), pip is asked for a wheel for CPython 3.13 (Debian trixie's) on linux
armv7 (`pip download --no-deps --only-binary=:all: --platform ...`; a pure-Python py3-none-any wheel counts). A
package that the Dockerfiles install from Debian (python3-<name> in the apt-get lines of both stages) needs none: the
venv sees system packages, so pip takes Debian's as installed. The model stack (requirements/model.txt) is Debian's too.

--amd64 also asks for manylinux x86_64 wheels (the amd64 image installs wheels only as well).

Exit status: 0 all can be installed; 1 one or more cannot (each named, with the fix); 2 bad arguments or files;
3 the check could not run (pip or `packaging` missing for this interpreter, or the package index unreachable).
"""

from __future__ import annotations

import argparse
import email.parser
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # The development venv has packaging; any interpreter with pip has pip's vendored copy.
    from packaging.markers import UndefinedEnvironmentName
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:
    try:
        from pip._vendor.packaging.markers import UndefinedEnvironmentName
        from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
        from pip._vendor.packaging.utils import canonicalize_name
        from pip._vendor.packaging.version import InvalidVersion, Version
    except ImportError:
        print(
            f"could not check requirements/script.txt: {sys.executable} has neither pip nor packaging; "
            "run it with .venv/bin/python (make venv)",
            file=sys.stderr,
        )
        sys.exit(3)

ROOT = Path(__file__).resolve().parents[1]
OK, FAILED, USAGE, COULD_NOT_CHECK = 0, 1, 2, 3

PYTHON = ["--python-version", "3.13", "--implementation", "cp", "--abi", "cp313"]
# pip matches --platform tags exactly (manylinux2014 also as manylinux_2_17), so every manylinux level up to
# trixie's glibc 2.41 is named; linux_* wheels come only from indexes other than PyPI.
GLIBC_MINOR = 41


def manylinux_tags(arch: str, oldest: int, legacy: list[str]) -> list[str]:
    """Tags pip on trixie (glibc 2.41) accepts, most preferred first, as `--platform` options take them (lock.py too)."""
    return [*(f"manylinux_2_{n}_{arch}" for n in range(GLIBC_MINOR, oldest - 1, -1)), *legacy, f"linux_{arch}"]


ARMV7_TAGS = manylinux_tags("armv7l", 17, ["manylinux2014_armv7l"])
AMD64_TAGS = manylinux_tags("x86_64", 5, ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"])


@dataclass(frozen=True)
class Platform:
    name: str
    label: str
    tags: list[str]
    machine: str

    def pip_options(self) -> list[str]:
        return [*PYTHON, *(option for tag in self.tags for option in ("--platform", tag))]

    def marker_env(self, extra: str = "") -> dict[str, str]:
        return image_markers(self.machine, extra)


def image_markers(machine: str, extra: str = "") -> dict[str, str]:
    """PEP 508 marker values of an image: Debian trixie's CPython 3.13.5 on Linux on `machine` (lock.py too)."""
    return {
        "implementation_name": "cpython",
        "implementation_version": "3.13.5",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": "3.13.5",
        "python_version": "3.13",
        "sys_platform": "linux",
        "extra": extra,
    }


ARMV7 = Platform("armv7", "CPython 3.13 on linux armv7", ARMV7_TAGS, "armv7l")
AMD64 = Platform("amd64", "CPython 3.13 on manylinux x86_64", AMD64_TAGS, "x86_64")

# A pure-Python runtime requirement of the module: every index the image build can use has it, so failing to get
# it means the index cannot be reached, not that a package lacks a wheel.
PROBE = "prometheus-client"

# PyPI name -> Debian's package where it is not python3-<name>.
DEBIAN_NAMES = {
    "scikit-learn": "python3-sklearn",
    "python-dateutil": "python3-dateutil",
    "pytz": "python3-tz",
    "pyyaml": "python3-yaml",
    "pillow": "python3-pil",
    "beautifulsoup4": "python3-bs4",
    "pyzmq": "python3-zmq",
    "scikit-image": "python3-skimage",
    "pywavelets": "python3-pywt",
}
# Debian trixie's version of packages scoring scripts often need that PyPI has no armv7 wheel for, or that come
# with those (from apt-cache policy against trixie's index, binNMU suffixes left out; armhf has each of them).
TRIXIE = {
    "pandas": "2.2.3+dfsg-9", "psutil": "7.0.0-2", "matplotlib": "3.10.1+dfsg1-4", "pillow": "11.1.0-5+deb13u4",
    "lxml": "5.4.0-1", "statsmodels": "0.14.4+dfsg-1", "h5py": "3.13.0-1", "scikit-image": "0.25.2-2",
    "numexpr": "2.10.2-1", "bottleneck": "1.4.2+ds1-2", "pyzmq": "26.4.0-1", "shapely": "2.1.0-1", "ujson": "5.10.0-1",
    "cffi": "1.17.1-3", "cryptography": "43.0.0-3+deb13u1", "wrapt": "1.15.0-4", "python-dateutil": "2.9.0-4",
    "pytz": "2025.2-3", "pyyaml": "6.0.2-1", "markupsafe": "2.1.5-1", "msgpack": "1.0.3-3", "simplejson": "3.20.1-1",
    "psycopg2": "2.9.10-1", "grpcio": "1.51.1-6", "protobuf": "3.21.12-11+deb13u1", "tables": "3.10.2-2",
    "patsy": "1.0.1-1", "sympy": "1.13.3-5", "xgboost": "3.0.0-1", "coloredlogs": "15.0.1-1",
    "flatbuffers": "23.5.26+dfsg-4", "packaging": "25.0-1",
}  # fmt: skip


def debian_package(name: str) -> str:
    key = canonicalize_name(name)
    return DEBIAN_NAMES.get(key, f"python3-{key}")


def upstream(debian_version: str) -> str:
    """`1:1.24.2-1` -> 1.24.2, `1.5.3+dfsg-*` -> 1.5.3: the version the package's own metadata says."""
    version = re.sub(r"^\d+:", "", debian_version)  # the epoch
    version = version.rsplit("-", 1)[0]  # the Debian revision, or the `-*` of an apt pin
    return re.split(r"[+~]", version)[0].rstrip(".*")


def fix_for(name: str) -> str:
    """What to do about a package the images cannot get a wheel for."""
    package = debian_package(name)
    known = TRIXIE.get(canonicalize_name(name))
    if known:
        pin = known.rsplit("-", 1)[0]
        version = upstream(known)
        return (
            f"add Debian trixie's {package} ({version}) to both apt-get install lines of the three Dockerfiles, "
            f"as {package}='{pin}-*', and pin {canonicalize_name(name)}=={version} in requirements/script.txt so "
            f"that the dev virtualenv installs the same version; or drop {name} if score.py does not need it"
        )
    return (
        f"add Debian trixie's {package}, if there is one (`apt-cache policy {package}` against trixie shows its "
        f"version), to both apt-get install lines of the three Dockerfiles and pin that version in "
        f"requirements/script.txt; or drop {name} if score.py does not need it"
    )


@dataclass
class Debian:
    """A python3-* package the Dockerfiles install with apt."""

    package: str
    version: str | None  # upstream version when the Dockerfile pins it, else trixie's if known
    stages: set[int] = field(default_factory=set)


def debian_packages(dockerfile: Path, stages: int | None = None) -> dict[str, Debian]:
    """PyPI canonical name -> the Debian package the Dockerfile installs for it, with the stages naming it."""
    inverse = {deb: pypi for pypi, deb in DEBIAN_NAMES.items()}
    found: dict[str, Debian] = {}
    stage = -1
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if re.match(r"^\s*FROM\s", line, re.IGNORECASE):
            stage += 1
        for token in line.split():
            match = re.fullmatch(r"(python3-[a-z0-9][a-z0-9.+-]*)(?:=['\"]?([^'\"]+)['\"]?)?", token)
            if not match or match.group(1) in ("python3-venv", "python3-pip", "python3-dev"):
                continue
            deb, pin = match.group(1), match.group(2)
            pypi = inverse.get(deb, canonicalize_name(deb.removeprefix("python3-")))
            version = upstream(pin) if pin else (upstream(TRIXIE[pypi]) if pypi in TRIXIE else None)
            found.setdefault(pypi, Debian(deb, version)).stages.add(stage)
    return found


def model_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def requirement_lines(text: str) -> list[str]:
    lines, pending = [], ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line, pending = (pending + line.lstrip()).strip(), ""
        if line:
            lines.append(line)
    return lines


@dataclass
class Result:
    status: str  # ok, debian, model, skip, missing, error, note
    requirement: str
    detail: str
    needed_by: str = ""
    name: str = ""

    def line(self) -> str:
        tag = {"ok": "ok", "debian": "ok", "model": "ok", "skip": "skip", "note": "note"}.get(self.status, "FAIL")
        via = f" (for {self.needed_by})" if self.needed_by else ""
        return f"{tag:<5} {self.requirement}{via}: {self.detail}"


class CouldNotCheck(Exception):
    """pip is missing, or could not reach the package index (or did not answer in time)."""


def pip_download(requirement: str, platform: Platform, dest: Path) -> tuple[Path | None, str]:
    """The wheel pip finds for the requirement on the platform, or None and pip's complaint."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps", "--only-binary=:all:",
        "--retries", "2", "--timeout", "30", *platform.pip_options(), "--dest", str(dest), requirement,
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    except subprocess.TimeoutExpired:
        raise CouldNotCheck(f"pip download {requirement} did not finish in 300 s") from None
    if "No module named pip" in done.stderr:
        raise CouldNotCheck(f"{sys.executable} has no pip; run this with .venv/bin/python (make venv)")
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode == 0 and wheels:
        return wheels[0], ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    return None, (errors[-1] if errors else done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no wheel")


def wheel_requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        message = email.parser.Parser().parsestr(archive.read(name).decode("utf-8", "replace"))
    return message.get_all("Requires-Dist") or []


def _applies(requirement: Requirement, platform: Platform, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    try:
        return any(requirement.marker.evaluate(platform.marker_env(extra)) for extra in {"", *extras})
    except UndefinedEnvironmentName:
        return True


class Checker:
    """Requirements first, then what they need, breadth first; each package once."""

    def __init__(self, platform: Platform, pins: dict[str, str], debian: dict[str, Debian], workdir: Path) -> None:
        self.platform = platform
        self.pins = pins
        self.debian = debian  # the three Dockerfiles install the same Debian packages
        self.workdir = workdir
        self.results: list[Result] = []
        self._queue: deque[tuple[Requirement, str]] = deque()
        self._seen: set[str] = set()
        self._probed = False

    def _probe(self) -> None:
        """Before the first download: can pip reach the index at all? Otherwise a miss looks just like a package
        without a wheel (pip says "from versions: none" either way)."""
        if self._probed:
            return
        wheel, error = pip_download(PROBE, self.platform, self.workdir / "probe")
        if wheel is None:
            raise CouldNotCheck(f"pip could not get {PROBE}, which every index the build uses has ({error})")
        self._probed = True

    def check_lines(self, lines: list[str]) -> list[Result]:
        for line in lines:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                self.results.append(Result("skip", line, "not a package name, not checked"))
                continue
            if _applies(requirement, self.platform, set()):
                self._queue.append((requirement, ""))
            else:
                self.results.append(Result("skip", line, f"its marker excludes {self.platform.label}"))
        while self._queue:
            self._check(*self._queue.popleft())
        return self.results

    def _check(self, requirement: Requirement, needed_by: str) -> None:
        key = canonicalize_name(requirement.name)
        if key in self._seen:
            return
        self._seen.add(key)
        text = str(requirement)
        if requirement.url:
            self.results.append(Result("skip", text, "a direct URL, not checked", needed_by, key))
            return
        if key in self.pins:
            if needed_by:
                return  # the images' model stack: pip resolves what needs it against the pins
            fits = requirement.specifier.contains(self.pins[key], prereleases=True)
            status, detail = (
                ("model", f"the images' model stack ({self.pins[key]})")
                if fits
                else ("error", f"the images' model stack has {key} {self.pins[key]} (requirements/model.txt); drop this line")
            )
            self.results.append(Result(status, text, detail, needed_by, key))
            return
        if key in self.debian:
            self.results.append(self._from_debian(requirement, key, needed_by))
            return  # Debian brings what it needs
        self._probe()
        wheel, error = pip_download(text, self.platform, self.workdir / str(len(self._seen)))
        if wheel is None:
            detail = f"no wheel for {self.platform.label} ({error}). Fix: {fix_for(requirement.name)}"
            self.results.append(Result("missing", text, detail, needed_by, key))
            return
        kind = "pure Python" if wheel.name.endswith("-none-any.whl") else self.platform.name
        self.results.append(Result("ok", text, f"{wheel.name} ({kind})", needed_by, key))
        chain = f"{requirement.name}, for {needed_by}" if needed_by else requirement.name
        for line in wheel_requires(wheel):
            dependency = Requirement(line)
            if not _applies(dependency, self.platform, set(requirement.extras)):
                continue
            stack = canonicalize_name(dependency.name)
            if stack in self.pins and not dependency.specifier.contains(self.pins[stack], prereleases=True):
                # Not a failure: pip goes back to an older release that fits, but which one is better decided here.
                needs = f"{dependency.name}{dependency.specifier}"
                detail = (
                    f"{wheel.name} needs {needs}, the images have {stack} {self.pins[stack]}: pip will pick an "
                    f"older {requirement.name}; pin one that fits in requirements/script.txt"
                )
                self.results.append(Result("note", text, detail, needed_by, key))
            self._queue.append((dependency, chain))

    def _from_debian(self, requirement: Requirement, key: str, needed_by: str) -> Result:
        deb = self.debian[key]
        text = str(requirement)
        if len(deb.stages) < 2:
            return Result(
                "error",
                text,
                f"the Dockerfiles install {deb.package} in one stage only: it must be in both apt-get install "
                "lines (the build stage, for pip to see it installed; the final one, to have it at run time)",
                needed_by,
                key,
            )
        if deb.version is None:
            detail = f"Debian's {deb.package} (the Dockerfiles; version not pinned there)"
            return Result("debian", text, detail, needed_by, key)
        try:
            fits = requirement.specifier.contains(Version(deb.version), prereleases=True)
        except InvalidVersion:
            fits = True
        if not fits:
            return Result(
                "error",
                text,
                f"the Dockerfiles install Debian's {deb.package} {deb.version}, which this does not allow: "
                f"pin {key}=={deb.version} in requirements/script.txt (or drop it)",
                needed_by,
                key,
            )
        detail = f"Debian's {deb.package} {deb.version} (the Dockerfiles)"
        if not needed_by and str(requirement.specifier) != f"=={deb.version}":
            # The dev virtualenv takes it from PyPI: without the pin, it and the images would run different versions.
            detail += f"; pin {key}=={deb.version} in requirements/script.txt so that the dev virtualenv installs the same"
        return Result("debian", text, detail, needed_by, key)


def run(requirements: Path, dockerfile: Path, platforms: list[Platform], out: Any = sys.stdout) -> int:
    lines = requirement_lines(requirements.read_text())
    pins = model_pins(ROOT / "requirements" / "model.txt")
    debian = debian_packages(dockerfile)
    if not lines:
        print(f"{requirements}: no script requirements, nothing to check", file=out)
        return OK
    status = OK
    with tempfile.TemporaryDirectory(prefix="check-script-deps-") as tmp:
        for platform in platforms:
            print(f"== {requirements}: wheels for {platform.label}", file=out)
            checker = Checker(platform, pins, debian, Path(tmp) / platform.name)
            try:
                checker.check_lines(lines)
            except CouldNotCheck as exc:
                for result in checker.results:
                    print(result.line(), file=out)
                print(f"COULD NOT CHECK: {exc}. Nothing was decided about {requirements}.", file=out)
                return COULD_NOT_CHECK
            for result in checker.results:
                print(result.line(), file=out)
            if any(r.status in ("missing", "error") for r in checker.results):
                names = sorted({r.requirement for r in checker.results if r.status in ("missing", "error")})
                print(f"{len(names)} cannot be installed for {platform.label}: {', '.join(names)}", file=out)
                status = FAILED
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements" / "script.txt")
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile.arm32v7")
    parser.add_argument("--amd64", action="store_true", help="also look for manylinux x86_64 wheels (misses are notes)")
    args = parser.parse_args(argv)
    for path in (args.requirements, args.dockerfile):
        if not path.is_file():
            print(f"error: {path} does not exist", file=sys.stderr)
            return USAGE
    return run(args.requirements, args.dockerfile, [ARMV7, AMD64] if args.amd64 else [ARMV7])


if __name__ == "__main__":
    sys.exit(main())
