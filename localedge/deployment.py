"""The deployment manifest as the local edge runs it: modules, the commands that stand in for their images,
their environment and desired properties, and the routes.

Reads `deployment.template.json` (placeholders unexpanded) or a deployed `config/deployment.<platform>.json`.
`${VAR}` placeholders in module env values and desired properties are expanded by deploy.manifest's code
(.env, with the process environment on top). Every problem is collected and reported before anything starts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.settings import Settings
from deploy.manifest import AGENT, HUB, ManifestError, dig, expand, load_env, load_json, variable_resolver
from edgekit.routes import ModuleInput, Route, RouteError, module_problems, parse_routes
from localedge.create_options import CreateOptions, parse_create_options
from localedge.errors import EdgeError
from localedge.processes import REPO_ROOT

log = logging.getLogger(__name__)

DEFAULT_MANIFEST = REPO_ROOT / "deployment.template.json"
MODULE_JSON = REPO_ROOT / "module.json"
SENSOR_IMAGE = "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:"
OUR_IMAGE_PLACEHOLDER = re.compile(r"^\$\{MODULES\.(?P<name>[^.}]+)(?:\.[^}]+)?\}$")

INFERENCE, SENSOR, MAPPED = "inference", "sensor", "mapped"
KIND_COMMANDS = {INFERENCE: ("python", "-m", "app"), SENSOR: ("python", "-m", "sensor")}
RESTART_POLICIES = ("never", "on-failure", "on-unhealthy", "always")  # edgeAgent's; its default is "always"
STATUSES = ("running", "stopped")


class DeploymentError(EdgeError):
    """The manifest or the arguments cannot be run; `problems` lists every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(dict.fromkeys(problems))
        super().__init__("\n".join(f"- {p}" for p in self.problems))


@dataclass(frozen=True)
class ModuleSpec:
    """One module of the deployment, as the local edge starts it."""

    name: str
    image: str
    kind: str  # INFERENCE (our repository's module), SENSOR (Microsoft's simulated sensor) or MAPPED (--command)
    status: str
    command: tuple[str, ...]  # program first; "python" means this interpreter
    env: Mapping[str, str] = field(default_factory=dict)
    desired: Mapping[str, Any] = field(default_factory=dict)
    restart_policy: str = "always"
    create: CreateOptions = field(default_factory=CreateOptions)  # createOptions' Env, WorkingDir, Binds

    @property
    def running(self) -> bool:
        return self.status != "stopped"

    @property
    def argv(self) -> list[str]:
        program, *args = self.command
        return [sys.executable if program in ("python", "python3") else program, *args]

    def error_output(self, desired: Mapping[str, Any]) -> str | None:
        """The output our inference module sends error records on, given its desired properties (None for others).

        The module's precedence: desired `errorOutputName` > env `ERROR_OUTPUT_NAME` > the default.
        """
        if self.kind != INFERENCE:
            return None
        return str(desired.get("errorOutputName") or self.env.get("ERROR_OUTPUT_NAME") or Settings.error_output_name)


@dataclass(frozen=True)
class Deployment:
    source: Path
    modules: Mapping[str, ModuleSpec]
    routes: Sequence[Route]
    warnings: Sequence[str] = ()  # routes edgeHub accepts that the local edge cannot exercise, or probably mistakes
    time_to_live_secs: int = 7200  # $edgeHub storeAndForwardConfiguration.timeToLiveSecs: routes without their own TTL

    @property
    def running(self) -> list[ModuleSpec]:
        return [m for m in self.modules.values() if m.running]

    def start_waves(self) -> list[list[str]]:
        """Running modules grouped so that every route's target starts (and is subscribed) before its source.

        A module's messages sent before its target subscribed would be lost (edgeHub would store them).
        """
        running = {m.name for m in self.running}
        targets: dict[str, set[str]] = {name: set() for name in running}
        for route in self.routes:
            if not isinstance(route.sink, ModuleInput) or route.sink.module not in running:  # a sink's exact name
                continue
            for source in running:  # the modules the route reads from, in any case (edgeHub matches sources so)
                if route.source.reads_from(source) and source != route.sink.module:
                    targets[source].add(route.sink.module)
        depth: dict[str, int] = {}

        def visit(name: str, path: frozenset[str]) -> int:
            if name not in depth:
                nexts = [visit(t, path | {name}) for t in targets[name] if t not in path]  # a cycle ends the chain
                depth[name] = 1 + max(nexts, default=-1)
            return depth[name]

        for name in running:
            visit(name, frozenset())
        waves: dict[int, list[str]] = {}
        for name in (m.name for m in self.running):  # manifest order within a wave
            waves.setdefault(depth[name], []).append(name)
        return [waves[d] for d in sorted(waves)]


def parse_assignments(values: Iterable[str], what: str, problems: list[str]) -> list[tuple[str, str]]:
    """`NAME=VALUE` pairs (as --env MODULE:NAME=VALUE and --command NAME=CMD give them)."""
    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            problems.append(f"{what} {value!r}: use {'MODULE:NAME=VALUE' if what == '--env' else 'NAME=COMMAND'}")
            continue
        pairs.append((key, rest))
    return pairs


def our_repository_name(module_json: Path) -> str | None:
    """The image name of this repository's module (`edge-inference`), to recognise it in a deployed manifest."""
    try:
        repository = dig(json.loads(module_json.read_text(encoding="utf-8")), "image", "repository")
    except (OSError, json.JSONDecodeError):
        return None
    return repository.rsplit("/", 1)[-1] if isinstance(repository, str) and repository else None


def image_kind(image: str, our_module: str, our_repository: str | None) -> str | None:
    placeholder = OUR_IMAGE_PLACEHOLDER.match(image)
    if placeholder and placeholder["name"] == our_module:
        return INFERENCE
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    if our_repository and not image.startswith("${") and name == our_repository:
        return INFERENCE
    if image.startswith(SENSOR_IMAGE):
        return SENSOR
    return None


def read_variables(env_file: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Variables for `${VAR}`: .env if there is one (a local run does not need the registry's), the environment on top."""
    if not env_file.is_file():
        return dict(environ)
    try:
        return load_env(env_file, environ)[0]
    except ManifestError:
        return dict(environ)


def env_values(env: Any, module: str, problems: list[str]) -> dict[str, str]:
    """A module's `env` ({"NAME": {"value": ...}}) as strings; JSON numbers and booleans as JSON writes them."""
    out: dict[str, str] = {}
    for name, entry in (env or {}).items():
        value = entry.get("value") if isinstance(entry, dict) else None
        if value is None:
            problems.append(f'module \'{module}\': env {name} has no value (write {{"{name}": {{"value": ...}}}})')
            continue
        out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


def parse_overrides(env: Iterable[str], problems: list[str]) -> dict[str, dict[str, str]]:
    """`--env MODULE:NAME=VALUE` values → {module: {name: value}}."""
    overrides: dict[str, dict[str, str]] = {}
    for key, value in parse_assignments(env, "--env", problems):
        module, sep, name = key.partition(":")
        if not sep or not module or not name:
            problems.append(f"--env {key}={value}: use MODULE:NAME=VALUE")
            continue
        overrides.setdefault(module, {})[name] = value
    return overrides


def parse_commands(commands: Iterable[str], problems: list[str]) -> dict[str, tuple[str, ...]]:
    """`--command NAME=CMD` values → {module: argv}."""
    mapped: dict[str, tuple[str, ...]] = {}
    for name, command in parse_assignments(commands, "--command", problems):
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:  # e.g. an unbalanced quote
            problems.append(f"--command {name}={command}: {exc}")
            continue
        if argv:
            mapped[name] = argv
        else:
            problems.append(f"--command {name}=: give the command to run")
    return mapped


@dataclass(frozen=True)
class _Reader:
    """What reading one module needs: the manifest, `${VAR}` expansion and the user's overrides."""

    path: Path
    doc: Mapping[str, Any]
    resolve: Callable[[str], str]
    overrides: Mapping[str, Mapping[str, str]]
    mapped: Mapping[str, tuple[str, ...]]
    our_module: str
    our_repository: str | None

    def module(self, name: str, raw: Any, problems: list[str], expanded: list[Any]) -> ModuleSpec | None:
        image = str(dig(raw, "settings", "image") or "")
        kind = MAPPED if name in self.mapped else image_kind(image, self.our_module, self.our_repository)
        if kind is None:
            problems.append(
                f"module '{name}': no local command for image '{image}'; map it with --command {name}=\"python -m <package>\""
            )
            return None
        env = env_values(expand(dig(raw, "env"), self.resolve, str(self.path), expanded), name, problems)
        settings = dig(raw, "settings")
        options = {k: v for k, v in settings.items() if k.startswith("createOptions")} if isinstance(settings, dict) else {}
        create, create_problems = parse_create_options(expand(options, self.resolve, str(self.path), expanded))
        problems += [f"module '{name}': {p}" for p in create_problems]
        env.update(create.env)  # edgelet merges createOptions' Env over the module's env
        user_env = self.overrides.get(name, {})
        if kind == INFERENCE and "HTTP_PORT" not in user_env and "HTTP_PORT" not in create.env:
            env["HTTP_PORT"] = "0"  # several runs (and the user's own `serve`) must not compete for a port
        if kind == INFERENCE and "REPORT_JITTER_S" not in user_env:
            env["REPORT_JITTER_S"] = "0"  # one device, no fleet to spread: each change is reported at once
        env.update(user_env)
        status = str(dig(raw, "status") or "running")
        policy = str(dig(raw, "restartPolicy") or "always")
        if status not in STATUSES:
            problems.append(f"module '{name}': status {status!r} is not one of {', '.join(STATUSES)}")
        if policy not in RESTART_POLICIES:
            problems.append(f"module '{name}': restartPolicy {policy!r} is not one of {', '.join(RESTART_POLICIES)}")
        desired = dig(self.doc, "modulesContent", name, "properties.desired") or {}
        return ModuleSpec(
            name=name,
            image=image,
            kind=kind,
            status=status,
            command=self.mapped.get(name) or KIND_COMMANDS[kind],
            env=env,
            desired=expand(desired, self.resolve, str(self.path), expanded),
            restart_policy=policy,
            create=create,
        )


def load_deployment(
    manifest: Path | None = None,
    env: Iterable[str] = (),
    commands: Iterable[str] = (),
    *,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    our_module: str = "inference",
    module_json: Path = MODULE_JSON,
) -> Deployment:
    """Read and check a manifest; `env` is `MODULE:NAME=VALUE` overrides, `commands` `NAME=COMMAND` mappings.

    Raises DeploymentError naming every problem.
    """
    path = manifest or DEFAULT_MANIFEST
    loaded: list[Any] = []
    doc = load_json(path, loaded, "pass --manifest <path>, or run from the repository root")
    if doc is None:
        raise DeploymentError([str(p) for p in loaded])
    problems: list[str] = []
    env_file = env_file or REPO_ROOT / ".env"  # iotedgedev's place for it, whichever manifest is read
    variables = read_variables(env_file, os.environ if environ is None else environ)
    reader = _Reader(
        path,
        doc,
        variable_resolver(variables, env_file),
        parse_overrides(env, problems),
        parse_commands(commands, problems),
        our_module,
        our_repository_name(module_json),
    )

    raw_modules = dig(doc, *AGENT, "modules")
    if not isinstance(raw_modules, dict) or not raw_modules:
        problems.append(f"{path}: no modules under $edgeAgent's desired properties")
        raw_modules = {}
    expanded: list[Any] = []  # deploy.manifest's Problems for ${VAR}s it could not resolve
    specs = [reader.module(name, raw, problems, expanded) for name, raw in raw_modules.items()]
    modules = {spec.name: spec for spec in specs if spec is not None}
    problems += [str(p) for p in expanded]
    known = set(raw_modules)
    problems += [f"--env {m}:...: there is no module '{m}' in {path}" for m in reader.overrides if m not in known]
    problems += [f"--command {m}=...: there is no module '{m}' in {path}" for m in reader.mapped if m not in known]

    routes: list[Route] = []
    try:
        routes = parse_routes(dig(doc, *HUB, "routes") or {})
    except RouteError as err:
        problems += [f"route: {p}" for p in err.problems]
    for route in routes:  # module names compared as edgeHub compares them (edgekit.routes.deployed_module)
        problems += [f"{p} (modules: {', '.join(raw_modules)})" for p in module_problems(route, raw_modules)]
    if problems:
        raise DeploymentError(problems)
    warnings = route_warnings(routes)
    for warning in warnings:
        log.warning("%s", warning)
    ttl = dig(doc, *HUB, "storeAndForwardConfiguration", "timeToLiveSecs")
    return Deployment(path, modules, routes, warnings, ttl if type(ttl) is int and ttl > 0 else 7200)


def route_warnings(routes: Iterable[Route]) -> list[str]:
    """One line per route the local edge runs differently from edgeHub or that is probably not meant."""
    lines = []
    for route in routes:
        if route.unevaluated:
            lines.append(f"route '{route.name}' never fires on the local edge: {route.unevaluated}")
        lines += [f"route '{route.name}': {warning}" for warning in route.warnings]
    return lines
