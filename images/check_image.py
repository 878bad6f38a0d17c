"""Run inside a built image (`python - <platform> < images/check_image.py`) by images/test.sh:
checks what the Dockerfiles promise about the final image. Prints one line per check; exit 1 on any failure."""

import importlib.util
import os
import shutil
import sys

platform = sys.argv[1]
failures = 0


def check(ok: bool, what: str) -> None:
    global failures
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {what}")


check(os.getuid() == 10001, f"runs as uid 10001 (uid {os.getuid()})")
check(importlib.util.find_spec("pip") is None, "no pip module")
tools = [t for t in ("pip", "pip3", "gcc", "cc", "c++", "g++", "clang", "cpp", "gfortran", "make", "ld") if shutil.which(t)]
check(not tools, f"no pip or compiler executables ({' '.join(tools) or 'none found'})")
lists = [f for _, _, files in os.walk("/var/lib/apt/lists") for f in files if f != "lock"]
check(not lists, f"no apt lists ({len(lists)} files)")

# The arm32v7 model stack must be Debian's (pip must not have replaced it); amd64's comes from the venv.
expected = "/usr/lib/python3/dist-packages/" if platform == "arm32v7" else "/opt/venv/"
for name in ("numpy", "scipy", "sklearn", "joblib", "threadpoolctl"):
    origin = importlib.util.find_spec(name).origin
    check(origin.startswith(expected), f"{name} from {origin}")
if platform == "arm32v7":
    venv = [
        d
        for d in os.listdir("/opt/venv/lib/python3.11/site-packages")
        if d.split("-")[0].lower() in ("numpy", "scipy", "scikit_learn", "sklearn", "joblib", "threadpoolctl")
    ]
    check(not venv, f"no copy of the model stack in /opt/venv ({' '.join(venv) or 'none'})")

sys.exit(1 if failures else 0)
