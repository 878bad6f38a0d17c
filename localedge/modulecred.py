"""`python -m localedge modulecred [NAME]`: the environment to run a module of the running edge by hand.

As iotedgehubdev's `modulecred`: the module's connection string (`EdgeHubConnectionString`, with its
`GatewayHostName` = the module's broker) and `EdgeModuleCACertificateFile`, plus whatever else the edge gives that
module (its manifest `env`, its volumes), so the same module runs from a terminal or an IDE debugger as the edge
would run it. Printed as `export K=V` lines (`eval "$(python -m localedge modulecred NAME)"`), `--json`, or written
to an env file (`-o FILE`, K=V lines as IDEs read them). The connection string holds a key: it is printed, which is
the command's purpose, and never logged.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from localedge.control import request
from localedge.deployment import ModuleSpec
from localedge.errors import EdgeError
from localedge.processes import ModuleProcess

COMMAND = "modulecred"


def credentials(
    module: str | None,
    specs: Mapping[str, ModuleSpec],
    environment: Callable[[ModuleSpec], Mapping[str, str]],
    processes: Mapping[str, ModuleProcess],
) -> dict[str, Any]:
    """The control command's answer: {"module", "env", "pid"} (pid: the edge runs that module itself, else None).

    `module` None means the edge's only module; `environment` is the edge's own for a module's process, of which
    `env` keeps what the edge sets, not the edge's inherited environment (the user's shell has that anyway).
    """
    if module is None:
        if len(specs) != 1:
            raise EdgeError(f"name the module: the edge runs {', '.join(specs) or 'none'}")
        module = next(iter(specs))
    spec = specs.get(module)
    if spec is None:
        raise EdgeError(f"no module '{module}' in the running edge (modules: {', '.join(specs) or 'none'})")
    env = {k: v for k, v in environment(spec).items() if os.environ.get(k) != v}
    child = processes.get(module)
    running = child is not None and child.process is not None and child.process.poll() is None
    return {"module": module, "env": env, "pid": child.pid if running and child is not None else None}


def add_parser(sub: Any) -> None:
    """Register `modulecred` on the `python -m localedge` sub-commands."""
    p = sub.add_parser(COMMAND, help="print the environment to run a module of the running edge from a terminal or an IDE")
    p.add_argument("module", nargs="?", default=None, help="the module (default: the edge's only module)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of `export` lines")
    p.add_argument("--edge", default=None, metavar="NAME", help="the edge to reach (default: the only one running)")
    p.add_argument("-o", "--output-file", type=Path, default=None, help="also write K=V lines to this file (mode 0600)")
    p.set_defaults(handler=run)


def export_lines(env: dict[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(env.items()))


def run(args: argparse.Namespace) -> int:
    try:
        answer = request({"command": COMMAND, "module": args.module}, edge=args.edge)
    except EdgeError as err:  # NoEdgeRunning too
        print(f"error: {err}", file=sys.stderr)
        return 1
    if "error" in answer:
        print(f"error: {answer['error']}", file=sys.stderr)
        return 1
    env: dict[str, str] = answer["env"]
    if args.output_file is not None:
        args.output_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(args.output_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the module's key
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.writelines(f"{name}={value}\n" for name, value in sorted(env.items()))
    print(json.dumps(env, indent=2, sort_keys=True) if args.json else export_lines(env), end="\n" if args.json else "")
    if answer.get("pid") is not None:
        print(
            f"note: the edge runs '{answer['module']}' itself (pid {answer['pid']}); a second process with this identity "
            "takes its connection over (run the edge with --inputs ... --module-name NAME to run it only by hand)",
            file=sys.stderr,
        )
    return 0
