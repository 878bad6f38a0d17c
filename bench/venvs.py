"""Virtualenvs of pinned packages beside the project's own: the peers the benchmarks and reference tests run.

`ensure_venv(venv, pins)` builds `venv` with `python3.11 -m venv` + pip when its installed versions differ from
`pins` (reused when they match). A venv it built holds a marker file; a directory without one is never deleted.
A lock file keeps two builders apart; a failed build leaves no venv behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

PYTHON = "python3.11"
BUILD_TIMEOUT_S = 900.0
MARKER = ".azml-reference.json"  # in the venv: the pins it was built with, written once pip succeeded


class VenvUnavailable(RuntimeError):
    """The venv is missing and could not be built (or building was not allowed)."""


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed_versions(venv: Path, names: Sequence[str]) -> dict[str, str | None]:
    """name -> version installed in `venv` (None when absent), asked of the venv's own interpreter."""
    program = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n"
        "    try: return m.version(n)\n"
        "    except m.PackageNotFoundError: return None\n"
        "print(json.dumps({n: v(n) for n in sys.argv[1:]}))\n"
    )
    done = subprocess.run([str(venv_python(venv)), "-c", program, *names], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def venv_problem(venv: Path, pins: Sequence[str]) -> str | None:
    """Why `venv` does not hold `pins` (`name==version` each); None: it does."""
    if not venv_python(venv).exists():
        return f"{venv} does not exist" if not venv.exists() else f"{venv} has no bin/python"
    wanted = dict(p.split("==", 1) for p in pins)
    try:
        found = installed_versions(venv, list(wanted))
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        return f"{venv}: cannot ask its interpreter for versions: {exc}"
    wrong = {n: found[n] for n, v in wanted.items() if (found[n] or "").lower() != v.lower()}
    if wrong:
        return f"{venv}: versions differ from the pins: " + ", ".join(f"{n}={v} (want {wanted[n]})" for n, v in wrong.items())
    return None


def ensure_venv(
    venv: Path, pins: Sequence[str], *, build: bool = True, timeout: float = BUILD_TIMEOUT_S, python: str = PYTHON
) -> Path:
    """`venv` holding `pins`, built (or rebuilt, if one built here whose versions moved) when `build` allows;
    VenvUnavailable otherwise."""
    problem = venv_problem(venv, pins)
    if problem is None:
        return venv
    if not build:
        raise VenvUnavailable(problem)
    if venv.exists() and not (venv / MARKER).exists():
        raise VenvUnavailable(f"{problem}; it was not built by bench/venvs.py, so it is left alone")
    interpreter = shutil.which(python)
    if interpreter is None:
        raise VenvUnavailable(f"{problem}; and {python} is not on PATH to build it")
    try:
        venv.parent.mkdir(parents=True, exist_ok=True)
        with _lock_path(venv).open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if venv_problem(venv, pins) is None:  # built by another process meanwhile
                return venv
            _build(venv, interpreter, pins, problem, timeout)
    except OSError as exc:
        shutil.rmtree(venv, ignore_errors=True)
        raise VenvUnavailable(f"{problem}; building it failed: {exc}") from exc
    again = venv_problem(venv, pins)
    if again is not None:
        raise VenvUnavailable(f"built {venv}, but: {again}")
    return venv


def _lock_path(venv: Path) -> Path:
    """A lock file for building `venv`, outside the repository (nothing to ignore) and outside the venv (deleted on failure)."""
    digest = hashlib.sha256(str(venv.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"azml-reference-venv-{digest}.lock"


def pip_command(venv: Path, pins: Sequence[str]) -> list[str]:
    return [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins]


def _build(venv: Path, python: str, pins: Sequence[str], problem: str, timeout: float) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    deadline = time.monotonic() + timeout
    for step in ([python, "-m", "venv", str(venv)], pip_command(venv, pins)):
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            shutil.rmtree(venv, ignore_errors=True)
            raise VenvUnavailable(f"{problem}; building it took over {timeout:.0f}s: {' '.join(step)}") from None
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise VenvUnavailable(f"{problem}; building it failed: {' '.join(step)}\n{tail}")
    (venv / MARKER).write_text(json.dumps({"pins": list(pins)}, indent=2) + "\n")
