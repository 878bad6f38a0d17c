"""Run inside a built image by images/test.sh:

    python - <platform> '<labels as JSON>' key=value ... < images/check_image.py

with the repo's requirements/ mounted read-only at /tmp/requirements. Checks what the Dockerfiles promise about the
final image: non-root, no pip or compilers or apt lists, the architecture, every locked package installed at its
locked version and nothing else in the venv, the model stack and ONNX Runtime from Debian's packages, and the OCI
labels (the image's own, read by test.sh with `image inspect`, against the key=value pairs images/common.sh expects).
Prints one line per check; exit 1 on any failure.
"""

import importlib.metadata
import importlib.util
import json
import os
import platform as host
import re
import shutil
import sys
from pathlib import Path

platform = sys.argv[1]
labels = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
expected_labels = dict(arg.split("=", 1) for arg in sys.argv[3:])
failures = 0
MACHINES = {"amd64": "x86_64", "arm64v8": "aarch64", "arm32v7": "armv7l"}
MODEL_STACK = {
    "numpy": "numpy",
    "scipy": "scipy",
    "scikit-learn": "sklearn",
    "joblib": "joblib",
    "threadpoolctl": "threadpoolctl",
}
# Debian trixie's Python; the venv sees its packages (--system-site-packages).
VENV = Path(f"/opt/venv/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages")
DEBIAN = "/usr/lib/python3/dist-packages/"
REQUIREMENTS = Path("/tmp/requirements")


def check(ok: bool, what: str) -> None:
    global failures
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {what}")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line.split("#")[0].strip())
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


check(host.machine() == MACHINES[platform], f"runs on {MACHINES[platform]} ({host.machine()})")
check(os.getuid() == 10001, f"runs as uid 10001 (uid {os.getuid()})")
check(importlib.util.find_spec("pip") is None, "no pip module")
leftovers = [d.name for d in VENV.iterdir() if canonical(d.name.split("-")[0]) in ("pip", "setuptools", "wheel")]
check(not leftovers, f"no pip, setuptools or wheel in /opt/venv ({' '.join(leftovers) or 'none'})")
tools = [t for t in ("pip", "pip3", "gcc", "cc", "c++", "g++", "clang", "cpp", "gfortran", "make", "ld") if shutil.which(t)]
check(not tools, f"no pip or compiler executables ({' '.join(tools) or 'none found'})")
lists = [f for _, _, files in os.walk("/var/lib/apt/lists") for f in files if f != "lock"]
check(not lists, f"no apt lists ({len(lists)} files)")

check(sys.version_info[:2] == (3, 13), f"Debian trixie's Python 3.13 ({host.python_version()})")

# The model stack: the pinned versions, from Debian's packages on every image (pip must not have replaced them).
model = pins(REQUIREMENTS / "model.txt")
for name, module in MODEL_STACK.items():
    origin = importlib.util.find_spec(module).origin
    version = importlib.metadata.version(name)
    check(origin.startswith(DEBIAN) and version == model[name], f"{name} {version} from {origin}")
venv = [d.name for d in VENV.iterdir() if canonical(d.name.split("-")[0]) in (*MODEL_STACK, "sklearn", "onnxruntime")]
check(not venv, f"no copy of the model stack or ONNX Runtime in /opt/venv ({' '.join(venv) or 'none'})")
# ONNX Runtime, Debian's too (python3-onnxruntime, armhf included): importable, with the CPU provider, at the
# version the requirement files pin if they name it.
import onnxruntime  # noqa: E402  (after the checks above: a failing import must not hide them)

runtime_pins = {**pins(REQUIREMENTS / "runtime.txt"), **model}
ort_version = onnxruntime.__version__  # Debian's says "1.21" for 1.21.0: compared without trailing zeros


def release(version: str) -> str:
    return re.sub(r"(\.0)+$", "", version)


check(
    onnxruntime.__file__.startswith(DEBIAN)
    and "CPUExecutionProvider" in onnxruntime.get_available_providers()
    and release(ort_version) == release(runtime_pins.get("onnxruntime", ort_version)),
    f"onnxruntime {ort_version} from {onnxruntime.__file__} ({', '.join(onnxruntime.get_available_providers())})",
)

# The venv holds exactly the locks (runtime and script): the same bytes as every build of this commit.
locked = {**pins(REQUIREMENTS / "lock" / f"runtime-{platform}.txt"), **pins(REQUIREMENTS / "lock" / f"script-{platform}.txt")}
installed = {canonical(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions(path=[str(VENV)])}
wrong = sorted(f"{n} {installed.get(n, 'missing')} (lock {v})" for n, v in locked.items() if installed.get(n) != v)
extra = sorted(f"{n} {v}" for n, v in installed.items() if n not in locked)
check(bool(locked) and not wrong, f"{len(locked)} locked packages at their locked versions ({'; '.join(wrong) or 'all'})")
check(not extra, f"nothing in /opt/venv beyond the locks ({', '.join(extra) or 'nothing'})")

# OCI labels, as images/build.sh set them.
for key, value in expected_labels.items():
    label = f"org.opencontainers.image.{key}"
    check(bool(value) and labels.get(label) == value, f"label {label}={labels.get(label)!r}")

sys.exit(1 if failures else 0)
