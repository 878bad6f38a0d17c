"""Command line of the local edge: `python -m localedge run|desired|twin|call|stop|clean ...` (see --help)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localedge import modulecred, publish, runs, single, test_route
from localedge.agent import Backoff
from localedge.control import edge_name, request, running_edges
from localedge.deployment import DeploymentError, load_deployment
from localedge.edge import LocalEdge
from localedge.errors import EdgeError
from localedge.upstream import UpstreamMessage

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m localedge", description="The deployment on this machine: no Docker, no Azure.")
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="run the deployment until Ctrl-C (or --until N upstream messages)")
    r.add_argument(
        "--manifest", type=Path, default=None, help="default: deployment.template.json (or a config/deployment.*.json)"
    )
    r.add_argument("--env", action="append", default=[], metavar="MODULE:NAME=VALUE", help="set a module's env (repeatable)")
    r.add_argument(
        "--command",
        action="append",
        default=[],
        dest="commands",
        metavar='NAME="CMD"',
        help="run module NAME as CMD (repeatable)",
    )
    r.add_argument("--production-path", action="store_true", help="start modules through a local workload API (IOTEDGE_*)")
    r.add_argument("--verbose", action="store_true", help="module logs on the terminal too, prefixed by module name")
    r.add_argument("--name", default=None, help="its name for --edge (default: the manifest's folder)")
    r.add_argument(
        "--keep", action="store_true", help="also keep the temporary run dir (broker data, certificates); logs are kept anyway"
    )
    r.add_argument(
        "--keep-runs", type=int, default=runs.KEEP_RUNS, metavar="N", help=f"keep the last N runs' logs ({runs.KEEP_RUNS})"
    )
    r.add_argument(
        "--cool-off",
        type=float,
        default=Backoff.cool_off_unit_s,
        metavar="S",
        help="edgeAgent's restart cool-off unit: restarts after S, 2S, 4S ... seconds, at most 30S (default 10)",
    )
    r.add_argument("--until", type=int, default=None, metavar="N", help="stop once N messages reached $upstream")
    r.add_argument("--timeout", type=float, default=None, metavar="S", help="with --until: give up after S seconds (exit 1)")
    r.add_argument("--json", action="store_true", help="each upstream message and the final summary as JSON lines")
    single.add_arguments(r)
    r.add_argument(
        "--token-ttl",
        type=int,
        default=None,
        metavar="S",
        help="modules' SAS tokens live S seconds (the SDK renews and reconnects before expiry; default the SDK's 3600)",
    )

    d = sub.add_parser("desired", help="patch a module's desired properties in the running edge")
    d.add_argument("module")
    d.add_argument("patch", help="a JSON object, e.g. '{\"SendInterval\": 1}'")
    t = sub.add_parser("twin", help="print a module's twin in the running edge")
    t.add_argument("module")
    s = sub.add_parser("stop", help="stop a running edge (as Ctrl-C in its terminal)")
    k = sub.add_parser("clean", help="remove the kept logs of past runs (not of running edges)")
    k.add_argument("--keep", type=int, default=0, metavar="N", help="keep the newest N runs (default 0)")
    c = sub.add_parser("call", help="invoke a direct method of a module in the running edge")
    c.add_argument("module")
    c.add_argument("method")
    c.add_argument("payload", nargs="?", default="null", help="JSON (default null)")
    c.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (default 30; IoT Hub answers 504)")
    h = sub.add_parser("restart-hub", help="restart edgeHub (every broker) in the running edge")
    h.add_argument("--kill", action="store_true", help="SIGKILL the brokers (a crash) instead of stopping them")
    h.add_argument("--down", type=float, default=0.0, metavar="S", help="stay down S seconds (an outage; default 0)")
    for command in (d, t, c, s, h):
        command.add_argument("--edge", default=None, metavar="NAME", help="the edge to reach (default: the only one running)")
    test_route.add_parser(sub)
    modulecred.add_parser(sub)
    publish.add_parser(sub)
    return p


def describe(msg: UpstreamMessage) -> str:
    """One short human line for an upstream message."""
    head = f"{msg.module}/{msg.output} cid={msg.correlation_id or '-'}"
    body = msg.json_body()
    if msg.errors:
        code = body.get("code") if isinstance(body, dict) else None
        return f"{head} error={code or '?'}"
    if isinstance(body, dict) and isinstance(body.get("predictions"), list):
        return f"{head} predictions={len(body['predictions'])}"
    if isinstance(body, dict) and "label" in body:
        probability = body.get("probability")
        return f"{head} {body['label']}" + (f" p={probability:.3f}" if isinstance(probability, float) else "")
    return f"{head} {len(msg.body)} bytes"


class Printer:
    """Prints upstream messages as they arrive (the recorder calls it in arrival order)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.since = time.perf_counter()

    def __call__(self, msg: UpstreamMessage) -> None:
        line = json.dumps(msg.to_json(self.since)) if self.as_json else describe(msg)
        print(line, flush=True)


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _stopping(_signum: int, _frame: Any) -> None:
    print("stopping: every module, broker and temporary file is being removed", file=sys.stderr, flush=True)


def how_to(edge: LocalEdge) -> str:
    """What a newcomer can do with the running edge, from another terminal."""
    module = next(iter(edge.modules), "MODULE")
    target = f" --edge {edge.name}"
    return "\n".join(
        [
            f"  twin:     python -m localedge twin {module}{target}",
            f"  desired:  python -m localedge desired {module} '{{\"key\": 1}}'{target}",
            f"  methods:  python -m localedge call {module} METHOD '{{}}'{target}",
            f"  models:   python -m localedge publish BUNDLE.tar.gz{target}   (then the desired line it prints)",
            f"  stop:     python -m localedge stop{target}",
            f"  logs:     {edge.logs_dir}/<module>.log (kept; python -m localedge clean removes old runs)",
        ]
    )


def wait_upstream(edge: LocalEdge, count: int, timeout: float | None) -> bool:
    """True once `count` messages reached $upstream; False on timeout or a `stop` request."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not edge.stop_requested.is_set():
        left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        if edge.upstream.wait_for(count, max(0.0, left)):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
    return False


def run(args: argparse.Namespace) -> int:
    try:
        one = single.plan(args) if single.requested(args) else None
        deployment = one.deployment if one else load_deployment(args.manifest, args.env, args.commands)
    except DeploymentError as err:
        print(f"error: cannot run the deployment; {len(err.problems)} problem(s):\n{err}", file=sys.stderr)
        return EXIT_USAGE
    if args.timeout is not None and args.until is None:
        print("error: --timeout goes with --until N", file=sys.stderr)
        return EXIT_USAGE
    printer = Printer(args.json)
    name = args.name or edge_name(deployment.source.resolve().parent.name)
    if name in running_edges():
        print(f"error: a local edge named '{name}' is already running: give this one another --name", file=sys.stderr)
        return EXIT_USAGE
    edge = LocalEdge(
        deployment,
        production_path=args.production_path,
        verbose=args.verbose,
        on_upstream=single.show_output if one and not args.json else printer,
        keep_run_dir=args.keep,
        external=one.external if one else (),
        name=name,
        backoff=Backoff(cool_off_unit_s=args.cool_off, max_cool_off_s=30 * args.cool_off),
        logs_dir=runs.new_run(name, max(1, args.keep_runs)),
        token_ttl=args.token_ttl,
    )
    api = None
    # SIGINT too: a shell without job control starts background jobs with it ignored, and Ctrl-C must work.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the finally below stops every child
        signal.signal(sig, _raise_interrupt)
    code = EXIT_OK
    try:
        edge.start()
        printer.since = edge.ready_at or printer.since
        names = ", ".join(f"{module} (pid {m.pid})" for module, m in edge.modules.items())
        print(f"local edge '{name}' ready: {names}; run dir {edge.run_dir}", file=sys.stderr, flush=True)
        print(how_to(edge), file=sys.stderr, flush=True)
        api = single.start_api(one, edge) if one else None
        if args.until is not None:
            code = EXIT_OK if wait_upstream(edge, args.until, args.timeout) else EXIT_FAILED
            if code and not edge.stop_requested.is_set():
                print(f"timeout: {edge.upstream.count} of {args.until} upstream messages in {args.timeout:g}s", file=sys.stderr)
        else:
            print(f"Ctrl-C (or python -m localedge stop --edge {name}) stops everything", file=sys.stderr, flush=True)
            edge.stop_requested.wait()
    except KeyboardInterrupt:
        pass
    except EdgeError as err:
        print(f"error: {err}", file=sys.stderr)
        code = EXIT_FAILED
    finally:
        # A second Ctrl-C (or `timeout`, which signals the child and its group) must not cut the stop short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _stopping)
        if api is not None:
            api.stop()
        edge.stop()
    summary = {**edge.upstream.summary(edge.ready_at), "store": edge.status()["store"]}
    if args.json:
        print(json.dumps({"summary": True, "reached": code == EXIT_OK, **summary}), flush=True)
    else:
        print(f"summary: {json.dumps(summary)}", file=sys.stderr)
    return code


def clean(args: argparse.Namespace) -> int:
    """Remove past runs' logs, sparing those of running edges."""
    spare = set()
    for name in running_edges():
        try:
            spare.add(Path(request({"command": "status"}, edge=name)["logs_dir"]))
        except (EdgeError, KeyError, TypeError):
            continue  # a stale state file: nothing to spare
    removed = runs.clean(args.keep, spare=frozenset(spare))
    print(f"removed {len(removed)} run(s) from {runs.runs_root()}" + (f"; {len(spare)} running edge(s) kept" if spare else ""))
    return EXIT_OK


def control(args: argparse.Namespace) -> int:
    try:
        if args.verb == "desired":
            answer = request({"command": "desired", "module": args.module, "patch": json.loads(args.patch)}, edge=args.edge)
        elif args.verb == "twin":
            answer = request({"command": "twin", "module": args.module}, edge=args.edge)
        elif args.verb == "stop":
            answer = request({"command": "stop"}, edge=args.edge)
        elif args.verb == "restart-hub":
            message = {"command": "restart-hub", "kill": args.kill, "down_s": args.down}
            answer = request(message, timeout=args.down + 60, edge=args.edge)
        elif args.verb == publish.COMMAND:
            answer = request(publish.request_of(args), timeout=120, edge=args.edge)  # it unpacks and verifies the bundle
        else:
            message = {"command": "call", "module": args.module, "method": args.method, "payload": json.loads(args.payload)}
            answer = request({**message, "timeout": args.timeout}, timeout=args.timeout + 10, edge=args.edge)
    except json.JSONDecodeError as err:
        print(f"error: not JSON: {err}", file=sys.stderr)
        return EXIT_USAGE
    except EdgeError as err:  # NoEdgeRunning too: it says how to start one
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    if "error" in answer:
        print(f"error: {answer['error']}", file=sys.stderr)
        return EXIT_FAILED
    if args.verb == "desired":
        print(answer["version"])
        return EXIT_OK
    if args.verb == "twin":
        print(json.dumps(answer["twin"], indent=2))
        return EXIT_OK
    if args.verb == "stop":
        print(f"stopping '{answer['stopping']}'")
        return EXIT_OK
    if args.verb == publish.COMMAND:
        print(publish.show(answer))
        return EXIT_OK
    if args.verb == "restart-hub":
        print(f"edgeHub restarted: {', '.join(answer['restarted'])}")
        return EXIT_OK
    print(f"{answer['status']} {json.dumps(answer['payload'])}")
    return EXIT_OK if answer["status"] < 400 else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verb == "run":
        return run(args)
    if args.verb in ("test-route", modulecred.COMMAND):
        return int(args.handler(args))
    if args.verb == "clean":
        return clean(args)
    return control(args)


if __name__ == "__main__":
    sys.exit(main())
