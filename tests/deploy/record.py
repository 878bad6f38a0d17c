"""Record the golden files: what iotedgedev 3.3.7 writes for each side-by-side case (tests/deploy/cases.py).

    .venv-iotedgedev/bin/iotedgedev --version      # iotedgedev 3.3.7 on Python < 3.10 (see deploy/README.md)
    .venv/bin/python -m tests.deploy.record [--public DIR]

Cases of this repository's own solutions go to tests/deploy/goldens/; cases of public solutions go beside their
files (DIR/goldens/, default: where public.py finds them), never into this repository.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.deploy.cases import CASES, PUBLIC_CASES
from tests.deploy.harness import (
    SOLUTIONS,
    SchemaProxy,
    iotedgedev_executable,
    prepare_home,
    run_environment,
    run_iotedgedev,
    save_golden,
)
from tests.deploy.public import public_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.record", description=__doc__.splitlines()[0])
    parser.add_argument("--public", type=Path, default=None, help="the folder holding the public solutions")
    args = parser.parse_args(argv)
    executable = iotedgedev_executable()
    if executable is None:
        print("error: iotedgedev not found (.venv-iotedgedev/bin/iotedgedev, or $IOTEDGEDEV)", file=sys.stderr)
        return 2
    with SchemaProxy() as proxy, tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        prepare_home(home)
        environ = run_environment(home, proxy.url, executable)
        for case in [*CASES, *PUBLIC_CASES]:
            folder = (args.public / case.solution if args.public else public_dir(case.solution)) if case.public else None
            if case.public and (folder is None or not folder.is_dir()):
                print(f"skipped {case.id}: the public solution {case.solution} is not laid out (tests/deploy/public.py)")
                continue
            source = folder if folder is not None else SOLUTIONS / case.solution
            reference = run_iotedgedev(executable, case, source, Path(scratch) / case.id, environ)
            path = save_golden(case, reference, folder)
            print(f"recorded {case.id}: {reference.verdict()} (exit {reference.exit_code}) -> {path}")
        if not any(r.startswith("http://json.schemastore.org/") for r in proxy.requests):
            print("error: iotedgedev never asked for the schema: its validation was skipped", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
