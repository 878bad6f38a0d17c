"""The checks beyond the schema: routes, image names, registry logins, and the inference module's own settings.

Each check reports through `Report`: `error` (nothing is written) or `warning` (written, and said on stderr).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.settings import ENV_NAMES, FIELDS, Settings, validate
from app.settings.twin import LIVE, desired_problems
from deploy.expansion import VARIABLE, Json, JsonPath
from edgekit.routes import RouteError, module_problems, parse_routes
from edgekit.typed_settings import values_from_env

MODULE_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
REQUIRED_MODULE_KEYS = ("version", "type", "status", "restartPolicy")
LOCAL_REGISTRIES = ("localhost", "127.0.0.1")  # a local registry needs no login (iotedgedev's .env says the same)
PUBLIC_REGISTRIES = ("mcr.microsoft.com", "docker.io", "index.docker.io", "registry-1.docker.io")
PLACEHOLDER_VALUE = re.compile(r"^(?:replace[-_ ]?with.*|changeme|change[-_ ]me|<[^>]*>|x{3,}|\*{3,})$", re.IGNORECASE)
ROUTE_GRAMMAR = 'FROM <source> [WHERE <condition>] INTO $upstream | BrokeredEndpoint("/modules/<m>/inputs/<i>")'
# Docker's reference grammar (distribution/reference): [host[:port]/]path[:tag][@digest], path components lowercase.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
# Variables the module reads besides its settings: the runtime's and Azure ML's.
KNOWN_ENV = re.compile(r"^(IOTEDGE_\w+|AZUREML_\w+|RuntimeLogLevel|EdgeHubConnectionString|EdgeModuleCACertificateFile)$")


def jpath(parts: Iterable[str | int]) -> str:
    """`$.modulesContent.$edgeAgent["properties.desired"].modules.x`: dotted keys need brackets to stay unambiguous."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[$\w-]+", part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def dig(node: Json, *keys: str | int) -> Json:
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


@dataclass(frozen=True)
class Problem:
    """One thing to fix: the file, where in it (JSON path or line), what is wrong and how to fix it."""

    file: str
    where: str
    what: str
    fix: str

    def __str__(self) -> str:
        place = f"{self.file}: {self.where}" if self.where else self.file
        return f"{place}: {self.what}" + (f"\n    fix: {self.fix}" if self.fix else "")


@dataclass
class Report:
    """Problems (nothing is written) and warnings (written anyway) of one file."""

    file: str
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def error(self, path: JsonPath | str, what: str, fix: str) -> None:
        self.errors.append(Problem(self.file, path if isinstance(path, str) else jpath(path), what, fix))

    def warning(self, path: JsonPath | str, what: str, fix: str) -> None:
        self.warnings.append(Problem(self.file, path if isinstance(path, str) else jpath(path), what, fix))

    @property
    def paths(self) -> set[str]:
        return {p.where for p in self.errors}


# --- modules ----------------------------------------------------------------------------------------------------------


def check_modules(modules: Mapping[str, tuple[Json, JsonPath]], report: Report) -> None:
    for name, (module, path) in modules.items():
        if not MODULE_NAME.match(name):
            report.error(path, f"module name '{name}' does not match ^[a-zA-Z0-9_-]+$", "rename it (letters, digits, _ and -)")
        missing = [k for k in REQUIRED_MODULE_KEYS if not dig(module, k)]
        missing += [] if dig(module, "settings", "image") else ["settings.image"]
        if missing:
            example = (
                '"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always", "settings": {"image": ...}'
            )
            report.error(path, f"module '{name}' lacks {', '.join(missing)}", f"add them, e.g. {example}")


def check_image(image: str, path: JsonPath, report: Report) -> None:
    if "${" in image or report.paths & {jpath(path)}:
        return  # an unresolved placeholder is reported where it is written
    if len(image) > 255 or not IMAGE_REFERENCE.match(image):
        report.error(
            path,
            f"'{image}' is not an image reference the runtime can pull",
            "write [registry/]name[:tag] (name in lowercase: letters, digits, . _ -); replace any <...> or __...__ "
            "placeholder of the sample with a real value",
        )


# --- createOptions ----------------------------------------------------------------------------------------------------

CHUNK_CHARS = 512  # edgeAgent reads createOptions as twin strings of at most 512 characters...
MAX_CHUNKS = 8  # ...createOptions, createOptions01 ... createOptions07: 4 KB in all


def chunk_create_options(settings: dict[str, Json], path: JsonPath, report: Report) -> None:
    """Object createOptions -> minified JSON in 512-character strings createOptions, createOptions01, ... (in place)."""
    options = settings["createOptions"]
    if isinstance(options, str):
        text = options  # already the runtime's form: kept as written (iotedgedev splits it too when longer than 512)
        try:
            parsed = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as err:
            report.error(path, f"string createOptions is not JSON ({err.msg})", "write it as a JSON object")
            return
        if not isinstance(parsed, dict):
            report.error(path, "createOptions is not a JSON object", "write it as a JSON object, e.g. {}")
            return
    elif isinstance(options, dict):
        text = json.dumps(options, separators=(",", ":"))  # as iotedgedev: minified, non-ASCII as \\u escapes
        extra = sorted(k for k in settings if re.fullmatch(r"createOptions\d\d", k))
        if extra:
            report.error(
                path[:-1],
                f"{', '.join(extra)} next to an object createOptions",
                "remove them: the object is split into createOptionsNN when the manifest is made",
            )
            return
    else:
        report.error(path, f"createOptions is a {type(options).__name__}", "write it as a JSON object")
        return
    if len(text) > CHUNK_CHARS * MAX_CHUNKS:
        report.error(
            path,
            f"createOptions is {len(text)} characters minified; the runtime takes at most "
            f"{CHUNK_CHARS * MAX_CHUNKS} ({MAX_CHUNKS} strings of {CHUNK_CHARS})",
            "shrink it: drop default values, or move large settings to env or the module twin",
        )
        return
    chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]
    settings["createOptions"] = chunks[0]
    settings.update({f"createOptions{n:02d}": chunk for n, chunk in enumerate(chunks[1:], start=1)})


# --- routes -----------------------------------------------------------------------------------------------------------


def check_routes(
    routes: Mapping[str, tuple[Json, JsonPath]],
    modules: Iterable[str],
    report: Report,
    schema_version: Json,
    schema_path: JsonPath,
) -> None:
    deployed = list(modules)
    unknown_fix = f"correct the module name (modules: {', '.join(deployed) or 'none'}) or add the module"
    for name, (route, route_path) in routes.items():
        path = route_path
        if isinstance(route, dict) and isinstance(route.get("route"), str):
            if isinstance(schema_version, str) and schema_version.strip() == "1.0":
                report.error(
                    schema_path,
                    f"route '{name}' has the object form (priority, timeToLiveSecs), which edgeHub schema 1.0 lacks",
                    'set "schemaVersion" to "1.1" or later (EDGEHUB_SCHEMA_VERSION; IoT Edge 1.6 uses 1.2)',
                )
            path = (*path, "route")
        try:  # edgeHub's grammar and compiler, WHERE conditions included (edgekit.routes: the one route reader)
            [parsed] = parse_routes({name: route})
        except RouteError as err:
            for problem in err.problems:
                report.error(path, problem, f"rewrite it as {ROUTE_GRAMMAR}")
            continue
        for said in parsed.warnings:  # what edgeHub accepts but is probably not meant
            report.warning(path, f"route '{name}': {said}", "")
        if parsed.unevaluated:
            report.warning(
                path, f"route '{name}' is for edgeHub; the local edge (make edge) cannot exercise it: {parsed.unevaluated}", ""
            )
        # Module names as edgeHub resolves them: a source in any case, a sink by its exact name. edgeHub takes such a
        # route (its messages wait for, or never meet, that module), so it is a warning: usually a typo, never a refusal.
        for problem in module_problems(parsed, deployed):
            report.warning(path, problem, unknown_fix)


# --- registry credentials ---------------------------------------------------------------------------------------------


def registry_host(image: str) -> str | None:
    """Docker's rule: the first path part is a registry host if it has a dot or a port, or is localhost."""
    first, slash, _ = image.partition("/")
    return first if slash and ("." in first or ":" in first or first == "localhost") else None


def _address(entry: Json) -> str:
    return str(dig(entry, "address") or "").strip().lower().removeprefix("https://").removeprefix("http://").rstrip("/")


@dataclass(frozen=True)
class Registries:
    """What the registry check needs to know besides the manifest."""

    env_file: Path
    variables: Mapping[str, str]
    examples: Mapping[str, str]  # .env.example's values, to spot ones never filled in

    @property
    def servers(self) -> dict[str, str]:
        """Registry host -> the CONTAINER_REGISTRY_SERVER[_suffix] variable naming it."""
        out = {}
        for name, value in self.variables.items():
            if re.fullmatch(r"CONTAINER_REGISTRY_SERVER(_\w+)?", name) and value.strip():
                out[value.strip().lower().rstrip("/")] = name
        return out


def check_credentials(
    images: Mapping[JsonPath, str], creds: Json, raw_creds: Json, creds_path: JsonPath, reg: Registries, report: Report
) -> None:
    """Each registry the manifest pulls from needs its login in registryCredentials (public and local ones aside)."""
    entries = creds if isinstance(creds, dict) else {}
    hosts: dict[str, str] = {}
    for image in images.values():
        host = registry_host(image)
        if host is not None and "${" not in image:
            hosts.setdefault(host.lower(), image)
    for host, image in hosts.items():
        if host.split(":")[0] in LOCAL_REGISTRIES or host in PUBLIC_REGISTRIES:
            continue
        matching = [(key, entry) for key, entry in entries.items() if isinstance(entry, dict) and _address(entry) == host]
        if not matching:
            variable = reg.servers.get(host)
            suffix = variable.removeprefix("CONTAINER_REGISTRY_SERVER") if variable else ""
            fix = (
                f'add an entry {{"username", "password", "address": "{host}"}} reading '
                f"CONTAINER_REGISTRY_USERNAME{suffix}, CONTAINER_REGISTRY_PASSWORD{suffix} and "
                f"CONTAINER_REGISTRY_SERVER{suffix} from {reg.env_file}"
            )
            what = f"no registry credentials for {host}, where the image {image} is pulled from"
            if variable or host.endswith(".azurecr.io"):
                report.error(creds_path, what, fix)
            else:
                report.warning(creds_path, what + " (fine if it is a public registry)", fix)
            continue
        for key, entry in matching:
            for name in ("username", "password"):
                raw = dig(raw_creds, key, name)
                names = [m.strip("{}") for m in VARIABLE.findall(raw)] if isinstance(raw, str) else []
                if not entry.get(name):
                    fix = f"set {', '.join(names)} in {reg.env_file}" if names else f"fill in the {name} for {host}"
                    report.error((*creds_path, key, name), f"empty {name} for registry {host}", fix)
                    continue
                stale = [n for n in names if n in reg.examples and reg.variables.get(n) == reg.examples[n]]
                if stale or (name == "password" and isinstance(entry.get(name), str) and PLACEHOLDER_VALUE.match(entry[name])):
                    which = ", ".join(stale) if stale else f"the {name}"
                    where = reg.env_file
                    fix = f"put the real value in {where} (or export it, e.g. from a CI secret)"
                    if where.name == ".env.example":
                        fix = f"cp {where} {where.with_name('.env')} and put the real value there (or export it)"
                    report.warning(
                        (*creds_path, key, name), f"{which} for registry {host} still holds the example's placeholder value", fix
                    )


# --- the inference module's own settings ------------------------------------------------------------------------------


def _env_text(value: Json) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def module_environment(module: Json, base: JsonPath) -> dict[str, tuple[str, JsonPath]]:
    """The container's variables as the manifest sets them: createOptions.Env, then `env` (edgeAgent adds `env` last)."""
    out: dict[str, tuple[str, JsonPath]] = {}
    options = dig(module, "settings", "createOptions")
    if isinstance(options, str):
        try:
            options = json.loads(options) if options.strip() else {}
        except json.JSONDecodeError:
            options = {}
    listed = options.get("Env") if isinstance(options, dict) else None
    for i, item in enumerate(listed if isinstance(listed, list) else []):
        if isinstance(item, str) and "=" in item:
            name, _, value = item.partition("=")
            out[name] = (value, (*base, "settings", "createOptions", "Env", i))
    env = dig(module, "env")
    for name, entry in env.items() if isinstance(env, dict) else []:
        value = dig(entry, "value")
        if value is not None:
            out[name] = (_env_text(value), (*base, "env", name, "value"))
    return out


_LEADING_NAME = re.compile(r"^([^=:\s]+)\s*[=:]")


def check_inference_settings(module: Json, module_path: JsonPath, desired: Json, desired_path: JsonPath, report: Report) -> None:
    """The module's env and desired properties, validated by the module's own settings model (app.settings)."""
    env = module_environment(module, module_path)
    # a value still holding ${...} is reported where it is written; the module would read it as text
    checked = {name: value for name, (value, _) in env.items() if "${" not in value}
    values, env_problems = values_from_env(Settings, checked)
    settings = Settings(**values)
    env_problems += validate(settings)
    reported: set[str] = set()
    for line in env_problems:
        name = m.group(1) if (m := _LEADING_NAME.match(line)) else ""
        path = env[name][1] if name in env else (*module_path, "env")
        reported.add(name)
        report.error(path, f"the module refuses {line}", "correct the value (the README's Configuration table)")
    for name, (_, path) in env.items():
        if name in ENV_NAMES or KNOWN_ENV.match(name):
            continue
        close = difflib.get_close_matches(name, ENV_NAMES, n=1, cutoff=0.8)
        if close:
            report.warning(path, f"{name} is not a variable the module reads", f"did you mean {close[0]}?")
    if desired is None:
        return
    if not isinstance(desired, dict):
        report.error(desired_path, "the module's desired properties are not an object", "write them as a JSON object")
        return
    by_twin = {f.twin: f for f in FIELDS}
    _, twin_problems = desired_problems(settings, desired)
    for line in twin_problems:
        key = m.group(1) if (m := _LEADING_NAME.match(line)) else ""
        if key in desired:
            path = (*desired_path, key)
        elif key in by_twin:  # a rule across settings whose value comes from the env: said there already, or here
            env_name = by_twin[key].spec.env
            if env_name in reported:
                continue
            path = env[env_name][1] if env_name in env else desired_path
        else:
            path = desired_path
        live = ", ".join(LIVE)
        report.error(path, f"the module refuses desired properties: {line}", f"correct it (live settings: {live})")


def dump(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"


Warn = Callable[[Problem], None]
