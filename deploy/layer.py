"""`python -m deploy --layered-model`: a layered deployment that sets only the inference module's desired `model`.

    python -m deploy --layered-model --name NAME --version V --url URL --sha256 H [--size N]
                     [--from-bundle FILE] [--module inference] [--out FILE]

IoT Hub stacks layered deployments (`az iot edge deployment create --layered`) on a base deployment by priority;
this one carries nothing but the model to run, so a canary ring gets a new model by a target condition, and a
rollback is deleting the layer. Its form, as IoT Hub reads a layer:
- `content.modulesContent`, with `$edgeAgent` an empty object (IoT Hub counts a layer valid only with one; empty,
  it adds no module) and no `$edgeHub` (no routes);
- the module's desired property by its path, `"properties.desired.model": {...}`: a layer that set the module's
  `properties.desired` itself would replace every desired property the base deployment gives the module.

Beside it, `<out>.metrics.json`: the deployment's custom metrics (`--metrics`), IoT Hub queries over the module twins'
reported `model`: devices on the new version, rolling out, rolled back, failed.

The `model` value is checked against deploy/schema/model-desired.schema.json and, once the module declares it, the
module's own settings model; the SAS token in the URL is checked (read-only, not expired) and never printed: every
message shows the URL without its query (edgekit.urls.shown_url). The written file holds the token: it is created
readable by its owner only (config/ is not committed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jsonschema import Draft4Validator

from app.settings import Settings
from app.settings.model_spec import KEY as MODEL_KEY
from app.settings.twin import desired_problems
from deploy.checks import MODULE_NAME, Problem, Report
from edgekit.urls import shown_url

MODEL_SCHEMA_PATH = Path(__file__).parent / "schema" / "model-desired.schema.json"
DESIRED = MODEL_KEY  # the module's desired property
LAYER_KEY = f"properties.desired.{DESIRED}"
URL_ENV = "MODEL_URL"  # --url's default: a SAS URL kept out of the command line (shell history, make's echo)
SAS_EXPIRY_WARNING = timedelta(days=7)
LAYER_PRIORITY_BASE = 100
ROLLOUT_STATES = {"rollingOut": ("downloading", "verifying"), "rolledBack": ("rolled-back",), "failed": ("failed",)}


@dataclass(frozen=True)
class Layer:
    """A layered deployment and its custom metric queries, with every problem and warning."""

    document: dict[str, Any]
    metrics: dict[str, Any]
    report: Report


@cache
def _model_schema() -> Draft4Validator:
    return Draft4Validator(json.loads(MODEL_SCHEMA_PATH.read_text(encoding="utf-8")))


def _hidden(text: str, url: str) -> str:
    """`text` with the URL (or any part of it a message quoted) shown without its token."""
    query = urlsplit(url).query if url else ""
    text = text.replace(url, shown_url(url)) if url else text
    return text.replace(query, "…") if query else text


def _sas_checks(url: str, path: tuple[str, ...], report: Report, now: datetime) -> None:
    query = parse_qs(urlsplit(url).query)
    if "sig" not in query:
        report.warning(path, "the URL has no SAS signature (sig=)", "fine for a public blob; otherwise add a read-only SAS")
        return
    permissions = query.get("sp", [""])[0]
    if set(permissions) - {"r"}:
        report.error(
            path,
            f"the SAS token grants sp={permissions}; every device that gets the layer can use it",
            "make a read-only one: az storage blob generate-sas ... --permissions r --expiry ... --https-only --full-uri",
        )
    expiry = query.get("se", [""])[0]
    try:
        expires = datetime.fromisoformat(expiry) if expiry else None
    except ValueError:
        report.warning(path, f"the SAS expiry se={expiry} is not a date IoT Hub's devices can be judged by", "")
        return
    if expires is None:
        return
    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    if expires <= now:
        report.error(path, f"the SAS token expired at {expiry}", "make a new one with a later --expiry")
    elif expires - now < SAS_EXPIRY_WARNING:
        report.warning(
            path,
            f"the SAS token expires at {expiry}, in {(expires - now).days} day(s)",
            "devices that join later (a widened target condition, a device back online) cannot download it after; "
            "give the rollout's whole length",
        )


def model_problems(model: dict[str, Any], path: tuple[str, ...], report: Report, now: datetime | None = None) -> None:
    """The desired `model` as the module would judge it: the schema, the module's settings model, the SAS token."""
    url = model.get("url") if isinstance(model.get("url"), str) else ""
    schema_errors = list(_model_schema().iter_errors(model))
    for err in schema_errors:
        where = (*path, *(str(p) for p in err.absolute_path))
        report.error(where, _hidden(f"schema: {err.message}", url), f"see deploy/schema/{MODEL_SCHEMA_PATH.name}")
    # The module's own rules for its desired `model` (app/settings/model_spec.py), as the device will apply them;
    # after a schema error they would only say the same again.
    _, problems = desired_problems(Settings(), {MODEL_KEY: model}) if not schema_errors else (None, [])
    for line in problems:
        report.error(path, _hidden(f"the module refuses it: {line}", url), "correct the value")
    if url.startswith("https://"):
        _sas_checks(url, (*path, "url"), report, now or datetime.now(UTC))


def metric_queries(module: str, name: str, version: int) -> dict[str, Any]:
    """IoT Hub queries (an edge deployment's custom metrics) over the module twins' reported `model`."""
    base = f"SELECT deviceId FROM devices.modules WHERE moduleId = '{module}'"
    reported = "properties.reported.model"
    queries = {"onNewVersion": f"{base} AND {reported}.name = '{name}' AND {reported}.version = {version}"}
    for metric, states in ROLLOUT_STATES.items():
        state = f"= '{states[0]}'" if len(states) == 1 else "IN [" + ", ".join(f"'{s}'" for s in states) + "]"
        queries[metric] = f"{base} AND {reported}.rollout.version = {version} AND {reported}.rollout.state {state}"
    return {"queries": queries}


def build_layer(model: dict[str, Any], module: str, file: str, now: datetime | None = None) -> Layer:
    report = Report(file)
    module_path = ("content", "modulesContent", module)
    if not MODULE_NAME.match(module):
        report.error(module_path, f"module name '{module}' does not match ^[a-zA-Z0-9_-]+$", "use the base deployment's name")
    model_problems(model, (*module_path, LAYER_KEY), report, now)
    document = {"content": {"modulesContent": {"$edgeAgent": {}, module: {LAYER_KEY: model}}}}
    name, version = model.get("name"), model.get("version")
    metrics = metric_queries(module, str(name), version) if isinstance(version, int) else {"queries": {}}
    return Layer(document, metrics, report)


def bundle_digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def layer_priority(version: int) -> int:
    """Above the base deployment (the README's uses 10), and a newer version above an older one: deleting the newer
    layer hands its devices back to the older one, which is the rollback."""
    return LAYER_PRIORITY_BASE + version


def deployment_id(name: str, version: int) -> str:
    """A deployment id IoT Hub takes (lowercase), naming the model."""
    return re.sub(r"[^a-z0-9-]+", "-", f"model-{name.lower()}-v{version}")[:128]


def _write_private(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the layer holds a SAS token
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=2) + "\n")


def _model_from(args: argparse.Namespace, environ: dict[str, str], report: Report) -> dict[str, Any]:
    sha256, size = args.sha256, args.size
    if args.from_bundle is not None:
        try:
            digest, length = bundle_digest(args.from_bundle)
        except OSError as exc:
            report.error("--from-bundle", f"{args.from_bundle}: {exc.strerror or exc}", "name the bundle file")
        else:
            if sha256 is not None and sha256 != digest:
                report.error("--sha256", f"{sha256} is not the bundle's sha256 ({digest})", "drop --sha256 or correct it")
            if size is not None and size != length:
                report.error("--size", f"{size} is not the bundle's size ({length})", "drop --size or correct it")
            sha256, size = digest, length
    url = args.url if args.url is not None else environ.get(URL_ENV)
    missing = [flag for flag, value in (("--url", url), ("--sha256", sha256)) if not value]
    if missing:
        report.error("", f"missing {', '.join(missing)}", f"give --url (or export {URL_ENV}) and --sha256 (or --from-bundle)")
    model: dict[str, Any] = {"name": args.name, "version": args.version, "url": url or "", "sha256": sha256 or ""}
    if size is not None:
        model["size"] = size
    return model


def _default_out(name: str, version: int) -> Path:
    return Path("config") / f"layer.{deployment_id(name, version)}.json"


def metrics_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".json") + ".metrics.json")


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy --layered-model",
        description="Write a layered deployment that sets only the inference module's desired `model`, and its "
        "custom metric queries. The SAS URL is never printed.",
    )
    parser.add_argument("--layered-model", action="store_true", required=True)
    parser.add_argument("--name", required=True, help="the model's name (its manifest's)")
    parser.add_argument("--version", required=True, type=int, help="the model's version (its manifest's, a whole number)")
    parser.add_argument("--url", default=None, help=f"HTTPS URL of the bundle (default: ${URL_ENV}, kept out of shell history)")
    parser.add_argument("--sha256", default=None, help="the bundle's sha256 (python -m app bundle prints it)")
    parser.add_argument("--size", default=None, type=int, help="the bundle's size in bytes")
    parser.add_argument("--from-bundle", type=Path, default=None, help="the bundle file: its sha256 and size")
    parser.add_argument("--module", default="inference", help="the module's name in the base deployment")
    parser.add_argument("--out", type=Path, default=None, help="default: config/layer.model-<name>-v<version>.json")
    args = parser.parse_args(argv)
    out = args.out or _default_out(args.name, args.version)
    inputs = Report("arguments")
    model = _model_from(args, dict(os.environ if environ is None else environ), inputs)
    layer = build_layer(model, args.module, str(out))
    problems: list[Problem] = inputs.errors + layer.report.errors
    for warning in layer.report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        print(f"error: no layered deployment written; {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"- {problem}", file=sys.stderr)
        return 2
    _write_private(out, layer.document)
    _write_private(metrics_path(out), layer.metrics)
    print(f"wrote {out}: {args.module} runs {args.name} v{args.version} from {shown_url(model['url'])}")
    print(f"wrote {metrics_path(out)}: custom metrics {', '.join(layer.metrics['queries'])}")
    print(
        f"next: az iot edge deployment create --layered --hub-name HUB --deployment-id {deployment_id(args.name, args.version)}"
        f" --content {out} --metrics {metrics_path(out)} --target-condition \"tags.ring='canary'\""
        f" --priority {layer_priority(args.version)}"
    )
    return 0
