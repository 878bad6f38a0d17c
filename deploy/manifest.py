"""Generate config/deployment.<platform>.json from deployment.template.json (our own `iotedgedev genconfig`).

Steps, per platform: read .env and module.json; expand `${VAR}` and `${MODULES.<name>[.<platform>]}` inside the
template's JSON strings (keys included, as iotedgedev's textual expansion does); turn object `createOptions` into the
runtime's 512-character strings; validate against the public manifest schema (deploy/schema/) and our own checks.
All problems are collected and listed; if there is any, nothing is written.

Variable precedence: a variable set in the process environment wins over the same name in .env. That is what
iotedgedev does (it calls python-dotenv's `load_dotenv(path)`, which does not override) and python-dotenv's documented
default, and it lets CI inject the registry password without writing it to disk. So that a stray shell variable
cannot change a manifest silently, each .env value the environment overrides is named (never its value) on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from jsonschema import Draft4Validator

from edgekit.routes import ModuleInput, RouteError, parse_routes

Json = Any
JsonPath = tuple[str | int, ...]

SCHEMA_PATH = Path(__file__).parent / "schema" / "azure-iot-edge-deployment-2.0.json"
AGENT: JsonPath = ("modulesContent", "$edgeAgent", "properties.desired")
HUB: JsonPath = ("modulesContent", "$edgeHub", "properties.desired")
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
MODULE_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
CHUNK_CHARS = 512  # edgeAgent reads createOptions as twin strings of at most 512 characters...
MAX_CHUNKS = 8  # ...createOptions, createOptions01 ... createOptions07: 4 KB in all
REQUIRED_MODULE_KEYS = ("version", "type", "status", "restartPolicy")
LOCAL_REGISTRIES = ("localhost", "127.0.0.1")  # a local registry needs no login (iotedgedev's .env says the same)
SCHEMA_FIXES = {
    "required": "add the missing key",
    "additionalProperties": "remove the key or correct its spelling",
    "enum": "use one of the allowed values",
    "type": "give it the type the schema expects",
    "pattern": "rename it to match the pattern",
}


@dataclass(frozen=True)
class Problem:
    """One thing to fix: the file, where in it (JSON path or line), what is wrong and how to fix it."""

    file: str
    where: str
    what: str
    fix: str

    def __str__(self) -> str:
        place = f"{self.file}: {self.where}" if self.where else self.file
        return f"{place}: {self.what}\n    fix: {self.fix}"


class ManifestError(Exception):
    """Every problem found; nothing was written."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(dict.fromkeys(problems))  # both platforms usually hit the same problem: list it once
        super().__init__("\n".join(map(str, self.problems)))


class Unresolved(Exception):
    """A placeholder that cannot be expanded, with the fix."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what)
        self.what, self.fix = what, fix


@dataclass(frozen=True)
class Module:
    """Our repository's module as module.json describes it."""

    name: str
    repository: str
    version: str
    platforms: tuple[str, ...]

    def image(self, platform: str) -> str:
        return f"{self.repository}:{self.version}-{platform}"


def jpath(parts: Sequence[str | int]) -> str:
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


def strings(node: Json, path: JsonPath = ()) -> Iterator[tuple[JsonPath, str]]:
    """Every string in a JSON document, keys included, with its path."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key), key
            yield from strings(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings(value, (*path, i))
    elif isinstance(node, str):
        yield path, node


def load_env(env_file: Path, environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Variables for expansion (.env, the environment on top) and the .env names the environment overrides."""
    if not env_file.is_file():
        example = env_file.with_name(".env.example")
        fix = f"cp {example} {env_file}, then fill in the registry values" if example.is_file() else f"create {env_file}"
        raise ManifestError([Problem(str(env_file), "", "not found; the template's ${...} variables are read from it", fix)])
    from_file = {k: v for k, v in dotenv_values(env_file).items() if v is not None}  # a bare `NAME` line has no value
    overridden = sorted(k for k, v in from_file.items() if k in environ and environ[k] != v)
    return {**from_file, **environ}, overridden


def load_json(path: Path, problems: list[Problem], hint: str) -> dict[str, Json] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(Problem(str(path), "", "not found", hint))
        return None
    except json.JSONDecodeError as err:
        problems.append(
            Problem(str(path), f"line {err.lineno} column {err.colno}", f"not valid JSON: {err.msg}", "fix the syntax")
        )
        return None
    if not isinstance(doc, dict):
        problems.append(Problem(str(path), "$", "not a JSON object", "the file must hold one JSON object"))
        return None
    return doc


def unquoted_placeholders(text: str) -> Iterator[tuple[int, str]]:
    """(line, placeholder) for each ${...} outside a JSON string: we expand inside strings only, like iotedgedev."""
    in_string = escaped = False
    line = 1
    for i, char in enumerate(text):
        if char == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif match := PLACEHOLDER.match(text, i):
            yield line, match.group(0)


def read_template(template: Path, problems: list[Problem]) -> dict[str, Json] | None:
    try:
        text = template.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(Problem(str(template), "", "not found", "pass --template <path>, or run from the repository root"))
        return None
    unquoted = [
        Problem(
            str(template),
            f"line {line}",
            f"placeholder {placeholder} is not inside a quoted JSON string",
            f'quote it ("{placeholder}"): placeholders are expanded inside JSON strings only; for a number, write the number',
        )
        for line, placeholder in unquoted_placeholders(text)
    ]
    if unquoted:  # the file is not JSON until they are quoted, so stop here
        problems.extend(unquoted)
        return None
    return load_json(template, problems, "")


def expand(node: Json, resolve: Callable[[str], str], file: str, problems: list[Problem], path: JsonPath = ()) -> Json:
    """A copy of node with every ${...} inside its strings (keys too) replaced; unresolved ones are recorded."""
    if isinstance(node, dict):
        return {
            expand(k, resolve, file, problems, (*path, k)): expand(v, resolve, file, problems, (*path, k))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [expand(v, resolve, file, problems, (*path, i)) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def one(match: re.Match[str]) -> str:
        try:
            return resolve(match.group(1))
        except Unresolved as err:
            problems.append(Problem(file, jpath(path), f"{match.group(0)}: {err.what}", err.fix))
            return match.group(0)

    return PLACEHOLDER.sub(one, node)


def variable_resolver(variables: Mapping[str, str], env_file: Path) -> Callable[[str], str]:
    def resolve(name: str) -> str:
        if name in variables:
            return variables[name]
        raise Unresolved(f"{name} is not set", f"add {name}=<value> to {env_file} (see .env.example), or export it")

    return resolve


def template_resolver(variables: Mapping[str, str], module: Module, platform: str, env_file: Path) -> Callable[[str], str]:
    plain = variable_resolver(variables, env_file)

    def resolve(name: str) -> str:
        if not name.startswith("MODULES."):
            return plain(name)
        wanted, _, named_platform = name.removeprefix("MODULES.").partition(".")
        if wanted != module.name:
            raise Unresolved(
                f"no module named '{wanted}' in this repository",
                f"this repository is the module '{module.name}' (module.json): use ${{MODULES.{module.name}}}, "
                f"or pass --module-name {wanted}",
            )
        target = named_platform or platform
        if target not in module.platforms:
            raise Unresolved(
                f"platform '{target}' is not in module.json image.tag.platforms",
                f"use one of {', '.join(module.platforms)}, or add the platform and its Dockerfile to module.json",
            )
        return module.image(target)

    return resolve


def read_module(
    module_json: Path, name: str, variables: Mapping[str, str], env_file: Path, problems: list[Problem]
) -> Module | None:
    doc = load_json(module_json, problems, "pass --module-json <path>, or run from the repository root")
    if doc is None:
        return None
    label, found = str(module_json), len(problems)
    repository, version, platforms = (
        dig(doc, "image", "repository"),
        dig(doc, "image", "tag", "version"),
        dig(doc, "image", "tag", "platforms"),
    )
    if not isinstance(repository, str) or not repository:
        problems.append(
            Problem(label, "$.image.repository", "missing", 'set it, e.g. "${CONTAINER_REGISTRY_SERVER}/edge-inference"')
        )
    if not isinstance(version, str) or not version:
        problems.append(Problem(label, "$.image.tag.version", "missing", 'set it, e.g. "0.1.0"'))
    if not isinstance(platforms, dict) or not platforms:
        problems.append(
            Problem(
                label, "$.image.tag.platforms", "missing", 'map each platform to its Dockerfile, e.g. {"amd64": "./Dockerfile"}'
            )
        )
    if len(problems) > found:
        return None
    expanded = expand(repository, variable_resolver(variables, env_file), label, problems, ("image", "repository"))
    # An empty CONTAINER_REGISTRY_SERVER leaves "/edge-inference": not an image name the runtime can pull.
    if expanded.startswith("/") or "//" in expanded or re.search(r"\s", expanded):
        used = ", ".join(PLACEHOLDER.findall(repository)) or "the repository"
        problems.append(
            Problem(label, "$.image.repository", f"expands to '{expanded}', not an image name", f"set {used} in {env_file}")
        )
    return Module(name, expanded, version, tuple(platforms))


def chunk_create_options(desired: dict[str, Json], file: str, problems: list[Problem]) -> None:
    """Object createOptions → minified JSON in 512-character strings createOptions, createOptions01, ... (in place)."""
    for group in ("systemModules", "modules"):
        group_modules = dig(desired, group)
        for name, module in group_modules.items() if isinstance(group_modules, dict) else []:
            settings = dig(module, "settings")
            if not isinstance(settings, dict) or "createOptions" not in settings:
                continue
            path = jpath((*AGENT, group, name, "settings", "createOptions"))
            options = settings["createOptions"]
            if isinstance(options, str):
                text = options  # already the runtime's form: keep it as written
                try:
                    if text:
                        json.loads(text)
                except json.JSONDecodeError as err:
                    problems.append(
                        Problem(file, path, f"string createOptions is not JSON ({err.msg})", "write it as a JSON object")
                    )
                    continue
            elif isinstance(options, dict):
                text = json.dumps(options, separators=(",", ":"))
            else:
                problems.append(Problem(file, path, f"createOptions is a {type(options).__name__}", "write it as a JSON object"))
                continue
            if len(text) > CHUNK_CHARS * MAX_CHUNKS:
                problems.append(
                    Problem(
                        file,
                        path,
                        f"createOptions is {len(text)} characters minified; the runtime takes at most "
                        f"{CHUNK_CHARS * MAX_CHUNKS} ({MAX_CHUNKS} strings of {CHUNK_CHARS})",
                        "shrink it: drop default values, or move large settings to env or the module twin",
                    )
                )
                continue
            chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]
            settings["createOptions"] = chunks[0]
            settings.update({f"createOptions{n:02d}": chunk for n, chunk in enumerate(chunks[1:], start=1)})


def registry_host(image: str) -> str | None:
    """Docker's rule: the first path part is a registry host if it has a dot or a port, or is localhost."""
    first, slash, _ = image.partition("/")
    return first if slash and ("." in first or ":" in first or first == "localhost") else None


def check_credentials(doc: Json, template: Json, image: str, file: str, env_file: Path) -> list[Problem]:
    host = registry_host(image)
    if host is None or host.split(":")[0] in LOCAL_REGISTRIES:
        return []
    creds_path = (*AGENT, "runtime", "settings", "registryCredentials")
    creds = dig(doc, *creds_path)
    matching = [
        (key, entry)
        for key, entry in (creds.items() if isinstance(creds, dict) else [])
        if isinstance(entry, dict) and str(entry.get("address", "")).lower().removeprefix("https://").rstrip("/") == host.lower()
    ]
    if not matching:
        return [
            Problem(
                file,
                jpath(creds_path),
                f"no registry credentials for {host}, where the image {image} is pulled from",
                f'add an entry {{"username", "password", "address": "{host}"}} reading CONTAINER_REGISTRY_USERNAME, '
                f"CONTAINER_REGISTRY_PASSWORD and CONTAINER_REGISTRY_SERVER from {env_file}",
            )
        ]
    problems = []
    for key, entry in matching:
        for field in ("username", "password"):
            if entry.get(field):
                continue
            raw = dig(template, *creds_path, key, field)  # name the .env variable that fed the field, if any
            names = PLACEHOLDER.findall(raw) if isinstance(raw, str) else []
            fix = f"set {', '.join(names)} in {env_file}" if names else f"fill in the {field} for {host}"
            problems.append(Problem(file, jpath((*creds_path, key, field)), f"empty {field} for registry {host}", fix))
    return problems


def check(doc: Json, template: Json, image: str, file: str, env_file: Path, leftovers: bool) -> list[Problem]:
    """Our own checks, beyond the schema: names, required keys, route endpoints, leftovers, registry login."""
    problems: list[Problem] = []

    def add(path: JsonPath, what: str, fix: str) -> None:
        problems.append(Problem(file, jpath(path), what, fix))

    if leftovers:  # unresolved placeholders were already reported where they are used
        for path, text in strings(doc):
            if PLACEHOLDER.search(text):
                add(path, f"'{text}' still holds a ${{...}} placeholder", "define it in .env")
    modules = dig(doc, *AGENT, "modules")
    modules = modules if isinstance(modules, dict) else {}
    for name, module in modules.items():
        path = (*AGENT, "modules", name)
        if not MODULE_NAME.match(name):
            add(path, f"module name '{name}' does not match ^[a-zA-Z0-9_-]+$", "rename it (letters, digits, _ and -)")
        missing = [k for k in REQUIRED_MODULE_KEYS if not dig(module, k)]
        missing += [] if dig(module, "settings", "image") else ["settings.image"]
        if missing:
            example = (
                '"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always", "settings": {"image": ...}'
            )
            add(path, f"module '{name}' lacks {', '.join(missing)}", f"add them, e.g. {example}")
    unknown_fix = f"correct the module name (modules: {', '.join(modules) or 'none'}) or add the module"
    routes = dig(doc, *HUB, "routes")
    grammar = 'FROM <source> [WHERE <condition>] INTO $upstream | BrokeredEndpoint("/modules/<m>/inputs/<i>")'
    for name, route in routes.items() if isinstance(routes, dict) else []:
        path = (*HUB, "routes", name)
        path += ("route",) if isinstance(route, dict) and isinstance(route.get("route"), str) else ()
        try:  # edgeHub's grammar, WHERE conditions included: the local edge's parser, the one route reader
            [parsed] = parse_routes({name: route})
        except RouteError as err:
            for problem in err.problems:
                add(path, problem, f"rewrite it as {grammar}")
            continue
        if parsed.source.module is not None and parsed.source.module not in modules:
            add(path, f"route '{name}' reads from module '{parsed.source.module}', which is not deployed", unknown_fix)
        if isinstance(parsed.sink, ModuleInput) and parsed.sink.module not in modules:
            add(path, f"route '{name}' sends to module '{parsed.sink.module}', which is not deployed", unknown_fix)
    return problems + check_credentials(doc, template, image, file, env_file)


@cache
def schema_validator() -> Draft4Validator:
    return Draft4Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def schema_problems(doc: Json, file: str) -> list[Problem]:
    problems = []
    for err in schema_validator().iter_errors(doc):
        message = err.message if len(err.message) <= 300 else err.message[:300] + "..."
        fix = SCHEMA_FIXES.get(str(err.validator), "make it match the schema")
        problems.append(
            Problem(file, jpath(list(err.absolute_path)), f"schema: {message}", f"{fix} (deploy/schema/{SCHEMA_PATH.name})")
        )
    return problems


def build(
    template: dict[str, Json], module: Module, platform: str, variables: Mapping[str, str], file: str, env_file: Path
) -> tuple[Json, list[Problem]]:
    """The manifest for one platform, and its problems."""
    problems: list[Problem] = []
    doc = expand(template, template_resolver(variables, module, platform, env_file), file, problems)
    doc.pop("$schema-template", None)  # marks the template; the manifest schema allows modulesContent only
    desired = dig(doc, *AGENT)
    if isinstance(desired, dict):
        chunk_create_options(desired, file, problems)
    problems += check(doc, template, module.image(platform), file, env_file, leftovers=not problems)
    reported = {p.where for p in problems}  # our message at a path is more specific than the schema's
    problems += [p for p in schema_problems(doc, file) if p.where not in reported]
    return doc, problems


def generate(
    template: Path,
    env_file: Path,
    module_json: Path,
    module_name: str = "inference",
    platforms: Sequence[str] | None = None,
    out_dir: Path = Path("config"),
    environ: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write out_dir/deployment.<platform>.json for each platform (all of module.json's by default).

    Raises ManifestError listing every problem; then nothing is written.
    """
    variables, overridden = load_env(env_file, os.environ if environ is None else environ)
    for name in overridden:
        print(f"note: {name} is taken from the environment, not from {env_file}", file=sys.stderr)
    problems: list[Problem] = []
    module = read_module(module_json, module_name, variables, env_file, problems)
    raw = read_template(template, problems)
    if module is None or raw is None:
        raise ManifestError(problems)
    for platform in platforms or ():
        if platform not in module.platforms:
            problems.append(
                Problem(
                    str(module_json),
                    "$.image.tag.platforms",
                    f"platform '{platform}' is not listed",
                    f"use one of {', '.join(module.platforms)}, or add it with its Dockerfile",
                )
            )
    docs = {}
    for platform in [p for p in platforms or module.platforms if p in module.platforms]:
        docs[platform], found = build(raw, module, platform, variables, str(template), env_file)
        problems += found
    if problems:
        raise ManifestError(problems)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for platform, doc in docs.items():
        path = out_dir / f"deployment.{platform}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy", description="Generate config/deployment.<platform>.json from the template."
    )
    parser.add_argument("--template", type=Path, default=Path("deployment.template.json"))
    parser.add_argument("--env", type=Path, default=Path(".env"), help="the .env file (the process environment overrides it)")
    parser.add_argument("--module-json", type=Path, default=Path("module.json"))
    parser.add_argument("--module-name", default="inference", help="the name the template gives this repository's module")
    parser.add_argument(
        "--platform", action="append", dest="platforms", help="repeatable; default: every platform in module.json"
    )
    parser.add_argument("--out", type=Path, default=Path("config"))
    args = parser.parse_args(argv)
    try:
        written = generate(args.template, args.env, args.module_json, args.module_name, args.platforms, args.out)
    except ManifestError as err:
        print(f"error: no deployment manifest written; {len(err.problems)} problem(s):", file=sys.stderr)
        for problem in err.problems:
            print(f"- {problem}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0
