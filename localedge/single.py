"""Single-module mode of `python -m localedge run`: iotedgehubdev's `start -i input1,input2`, without Docker or a hub.

- `--inputs input1,input2 [--module-name NAME]`: no manifest; one module identity (iotedgehubdev's `target` by
  default) with its broker, twin and methods, which the user runs by hand from a terminal or an IDE with the
  environment `python -m localedge modulecred` prints.
- `--module NAME [--manifest M]`: only that module of the manifest, run by the edge as a child with its settings
  (env, desired properties); its inputs are the routes' inputs into it, plus any `--inputs`.

Either way the HTTP API (localedge.devapi) feeds its inputs on 127.0.0.1:53000 (`--api-port`), and every message
the module sends, on any output, goes to `$upstream`: printed here (output name and body) and kept for `GET`.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from edgekit.routes import ModuleInput, parse_routes
from localedge.deployment import (
    INFERENCE,
    KIND_COMMANDS,
    Deployment,
    DeploymentError,
    ModuleSpec,
    load_deployment,
    parse_overrides,
)
from localedge.devapi import DEFAULT_PORT, DevApi, prepare_session
from localedge.edge import LocalEdge
from localedge.upstream import UpstreamMessage

DEFAULT_MODULE = "target"  # iotedgehubdev's name for the module under debug
MODULE_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")  # edgeAgent's rule for module names
INPUT_NAME = re.compile(r"^[^/#+$]+$")  # anything a topic level and a route's BrokeredEndpoint can carry
SHOWN_BODY_CHARS = 2000


def add_arguments(run: argparse.ArgumentParser) -> None:
    """Add single-module mode's options to `run`."""
    g = run.add_argument_group("single-module mode (iotedgehubdev's `start -i`)")
    g.add_argument(
        "--inputs", default=None, metavar="IN1,IN2", help="the module's inputs, fed by the HTTP API; alone: run no module"
    )
    g.add_argument("--module", default=None, metavar="NAME", help="run only this module of the manifest, as a child")
    g.add_argument(
        "--module-name",
        default=None,
        metavar="NAME",
        help=f"with --inputs alone: the module's identity (default {DEFAULT_MODULE})",
    )
    g.add_argument(
        "--api-port",
        type=int,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"the HTTP API on 127.0.0.1 (default {DEFAULT_PORT}; 0: any)",
    )


def requested(args: argparse.Namespace) -> bool:
    return args.inputs is not None or args.module is not None


@dataclass(frozen=True)
class SingleModule:
    deployment: Deployment
    module: str
    inputs: tuple[str, ...]
    by_hand: bool  # the user runs the module (--inputs alone); else the edge runs it as a child
    api_port: int

    @property
    def external(self) -> tuple[str, ...]:
        """The modules the edge serves (broker, twin, routes) but does not start."""
        return (self.module,) if self.by_hand else ()


def _inputs(text: str | None, problems: list[str]) -> list[str]:
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if text is not None and not names:
        problems.append("--inputs: name at least one input, e.g. --inputs input1,input2")
    problems += [f"--inputs: {name!r} cannot be an input name (no / # + $)" for name in names if not INPUT_NAME.match(name)]
    return list(dict.fromkeys(names))


def plan(args: argparse.Namespace) -> SingleModule:
    """The one-module deployment the options ask for; DeploymentError naming every problem."""
    problems: list[str] = []
    inputs = _inputs(args.inputs, problems)
    if not 0 <= args.api_port <= 65535:
        problems.append(f"--api-port {args.api_port}: a port is 0..65535 (0: any free one)")
    if args.module is not None:
        if args.module_name is not None:
            problems.append("--module-name goes with --inputs alone (with --module the manifest names the module)")
        deployment = load_deployment(args.manifest, args.env, args.commands)
        spec = deployment.modules.get(args.module)
        if spec is None:
            raise DeploymentError(
                [f"--module {args.module}: no such module in {deployment.source} ({', '.join(deployment.modules)})"]
            )
        routed = [r.sink.input for r in deployment.routes if isinstance(r.sink, ModuleInput) and r.sink.module == spec.name]
        inputs = list(dict.fromkeys([*routed, *inputs]))
        if not inputs:
            problems.append(
                f"module '{spec.name}': no route into any of its inputs in {deployment.source}; name them with --inputs"
            )
        spec, source, by_hand = replace(spec, status="running"), deployment.source, False
    else:
        name = args.module_name or DEFAULT_MODULE
        if not MODULE_NAME.match(name):
            problems.append(f"--module-name {name!r}: a module name is letters, digits, - and _")
        if args.manifest is not None or args.commands:
            problems.append("--manifest and --command go with --module NAME (--inputs alone runs no manifest)")
        # iotedgehubdev's `-e K=V` names no module: it is the one module's.
        env = [value if ":" in value.partition("=")[0] else f"{name}:{value}" for value in args.env]
        overrides = parse_overrides(env, problems)
        problems += [f"--env {m}:...: the only module is '{name}'" for m in overrides if m != name]
        # Most likely this repository's inference module: its settings as the local edge gives them, its error output counted.
        spec = ModuleSpec(
            name=name,
            image="(run by hand)",
            kind=INFERENCE,
            status="running",
            command=KIND_COMMANDS[INFERENCE],
            env={"HTTP_PORT": "0", **overrides.get(name, {})},
        )
        source, by_hand = Path("--inputs"), True
    if problems:
        raise DeploymentError(problems)
    routes = parse_routes({"singleModule": f"FROM /messages/modules/{spec.name}/outputs/* INTO $upstream"})
    return SingleModule(Deployment(source, {spec.name: spec}, routes), spec.name, tuple(inputs), by_hand, args.api_port)


def start_api(single: SingleModule, edge: LocalEdge) -> DevApi:
    """The HTTP API on the started edge, and how to use it, printed."""
    broker = edge.brokers[single.module]
    if single.by_hand:
        prepare_session(broker, edge.device_id, single.module)
    api = DevApi(broker, edge.device_id, single.module, single.inputs, edge.upstream, port=single.api_port).start()
    module = single.module
    lines = [f"single-module mode: module '{module}', inputs {', '.join(single.inputs)}; HTTP API {api.url}"]
    if single.by_hand:
        lines.append(f'run your module with: eval "$(python -m localedge modulecred {module})" && python -m app  (or any module)')
    body = '{"inputName": "%s","data": "hello world"}' % single.inputs[0]  # noqa: UP031 (iotedgehubdev's example)
    lines.append(f"send it a message: curl --header \"Content-Type: application/json\" --request POST --data '{body}' {api.url}")
    lines.append(f"what it sends is printed here and kept: curl '{api.url}?output=NAME&wait=10'")
    print("\n".join(lines), file=sys.stderr, flush=True)
    return api


def show_output(msg: UpstreamMessage) -> None:
    """One line per message the module sent: its output, correlation id and body."""
    text = msg.body.decode("utf-8", "replace")
    if len(text) > SHOWN_BODY_CHARS:
        text = f"{text[:SHOWN_BODY_CHARS]}... ({len(msg.body)} bytes)"
    print(f"{msg.output} cid={msg.correlation_id or '-'}: {text}", flush=True)
