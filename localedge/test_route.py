"""`python -m localedge test-route --manifest MANIFEST.json --message MESSAGE.json`: which of a manifest's routes
a message takes, decided as edgeHub decides (IoT Hub's "Test route", for the edge; nothing runs).

MANIFEST.json: a deployment template or a generated manifest; the routes are
`modulesContent.$edgeHub["properties.desired"].routes`, as strings or {"route", "priority", "timeToLiveSecs"}.

MESSAGE.json, every key optional:

    {"source": "/messages/modules/<module>/outputs/<output>",   (default /messages/modules/sensor/outputs/out;
                                                                 also /messages/modules/<module> without an output,
                                                                 /messages for a device's, /twinChangeNotifications)
     "body": <any JSON value; a JSON string is the body's text>,
     "properties": {"name": "value", ...},                      (application properties)
     "systemProperties": {"contentType": "application/json", "contentEncoding": "utf-8", "messageId": ...,
                          "correlationId": ..., "connectionDeviceId": ..., ...}}

The message is the one edgeHub would route: the body encoded as contentEncoding says (utf-16/utf-32 little
endian, else utf-8); connectionModuleId and outputName come from the source; connectionDeviceId defaults to the
local edge's device (a device's message: leaf-device). Like edgeHub, it keeps correlationId as `$cid`.

Prints one JSON line per route, in manifest order: {"route": NAME, "matched": true|false, "sink": SINK}, and
exits 0; notes (a route the local edge never fires, a `$body` the message does not let edgeHub read) go to
stderr. Exits 2 with the reason for a manifest or message it cannot read, or a route edgeHub would reject.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.manifest import HUB, dig
from edgekit.routes import WIRE_SYSTEM_PROPERTIES, Message, Route, RouteError, parse_routes

EXIT_OK, EXIT_USAGE = 0, 2
DEFAULT_SOURCE = "/messages/modules/sensor/outputs/out"
EDGE_DEVICE, LEAF_DEVICE = "localedge-device", "leaf-device"
MESSAGE_KEYS = ("source", "body", "properties", "systemProperties")
SOURCE = re.compile(r"/messages(?:/modules/(?P<module>[^/]+)(?:/outputs/(?P<output>[^/]+))?)?|(?P<twin>/twinChangeNotifications)")
ENCODINGS = {"utf-16": "utf-16-le", "utf-32": "utf-32-le"}  # .NET's Encoding.Unicode and UTF32, as edgeHub reads
# The system properties a message can carry, by edgeHub's names (any case here); correlationId is kept as cid.
SYSTEM_NAMES = {
    name.lower(): name for name in (*WIRE_SYSTEM_PROPERTIES.values(), "correlationId", "connectionDeviceId", "connectionModuleId")
}


class InputError(Exception):
    """The manifest or the message cannot be used; the message says why."""


def add_parser(sub: Any) -> None:
    """Register `test-route` on the `python -m localedge` sub-commands."""
    p = sub.add_parser(
        "test-route",
        help="which of a manifest's routes a message takes, as edgeHub decides",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    p.add_argument("--manifest", type=Path, required=True, help="a deployment template or a generated manifest")
    p.add_argument(
        "--message",
        type=Path,
        required=True,
        help='a JSON file: {"source": ..., "body": ..., "properties": {...}, "systemProperties": {...}}',
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        routes = read_routes(args.manifest)
        msg, notes = read_message(args.message)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    for route in routes:
        print(json.dumps({"route": route.name, "matched": route.matches(msg), "sink": str(route.sink)}), flush=True)
    for note in notes + route_notes(routes, msg):
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def _load(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path}: cannot read it: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path}: not JSON: {exc}") from None


def read_routes(path: Path) -> list[Route]:
    doc = _load(path, "manifest")
    routes = dig(doc, *HUB, "routes") if isinstance(doc, dict) else None
    if not isinstance(routes, Mapping):
        raise InputError(f'manifest {path}: no routes object at modulesContent.$edgeHub["properties.desired"].routes')
    try:
        return parse_routes(routes)
    except RouteError as err:
        raise InputError(
            f"manifest {path}: edgeHub would reject its routes:\n" + "\n".join(f"- {p}" for p in err.problems)
        ) from None


def read_message(path: Path) -> tuple[Message, list[str]]:
    """The message MESSAGE.json describes, and notes on how edgeHub sees it."""
    spec = _load(path, "message")
    if not isinstance(spec, dict):
        raise InputError(f"message {path}: expected a JSON object with {', '.join(MESSAGE_KEYS)}")
    unknown = sorted(set(spec) - set(MESSAGE_KEYS))
    if unknown:
        raise InputError(f"message {path}: unknown key(s) {', '.join(unknown)}: the keys are {', '.join(MESSAGE_KEYS)}")
    source = spec.get("source", DEFAULT_SOURCE)
    match = SOURCE.fullmatch(source) if isinstance(source, str) else None
    if match is None:
        raise InputError(
            f"message {path}: source {source!r}: use /messages/modules/<module>/outputs/<output>, "
            "/messages/modules/<module>, /messages or /twinChangeNotifications"
        )
    module, output, twin = match["module"] or "", match["output"] or "", bool(match["twin"])
    properties = _strings(spec.get("properties", {}), f"message {path}: properties")
    given = _strings(spec.get("systemProperties", {}), f"message {path}: systemProperties")
    notes: list[str] = []
    system: dict[str, str] = {}
    for key, value in given.items():
        name = SYSTEM_NAMES.get(key.lower())
        if name is None:
            known = ", ".join(sorted(SYSTEM_NAMES.values(), key=str.lower))
            raise InputError(f"message {path}: systemProperties: unknown {key!r}: the known ones are {known}")
        if name == "correlationId":
            name = "cid"
            notes.append(
                "edgeHub keeps a message's correlationId as the system property cid: $cid reads it, $correlationId reads nothing"
            )
        system[name] = value
    sender = "$edgeHub" if twin else module  # edgeHub routes a twin change as coming from itself
    for name, actual in (("connectionModuleId", sender), ("outputName", output)):
        if name in system and system[name] != actual:
            raise InputError(f"message {path}: systemProperties.{name} {system[name]!r} contradicts the source {source!r}")
        if actual:
            system[name] = actual
    system.setdefault("connectionDeviceId", EDGE_DEVICE if sender else LEAF_DEVICE)
    system["edgeHubOriginInterface"] = "internal" if system["connectionDeviceId"] == EDGE_DEVICE else "downstream"
    if twin:
        system.update(messageType="twinChangeNotification", messageSchema="twinChangeNotification")
        system["enqueuedTime"] = datetime.now(UTC).isoformat()
    body = spec.get("body", "")
    text = body if isinstance(body, str) else json.dumps(body)
    codec = ENCODINGS.get(system.get("contentEncoding", "").lower(), "utf-8")
    msg = Message(module, output, text.encode(codec), properties, twin_change=twin, system_properties=system)
    return msg, notes


def _strings(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InputError(f"{what}: expected an object of name: string")
    return value


def route_notes(routes: list[Route], msg: Message) -> list[str]:
    notes = [f"route '{r.name}' never fires on the local edge: {r.unevaluated}" for r in routes if r.unevaluated]
    notes += [f"route '{r.name}': {w}" for r in routes for w in r.warnings]
    reads_body = any(r.condition is not None and "$body" in r.condition.text.lower() for r in routes)
    if reads_body and isinstance(msg.body_json, str):
        notes.append(f"edgeHub cannot read this message's body, so every $body is undefined: {msg.body_json}")
    return notes
