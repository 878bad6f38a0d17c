"""Generate config/deployment.<platform>.json from a deployment template: our own `iotedgedev genconfig`.

For any iotedgedev solution: `python -m deploy --template SOLUTION/deployment.template.json [--env SOLUTION/.env]
[--out DIR] [--platform P]`. With no arguments: this repository's deployment.template.json, .env and module.json.

Per platform, as iotedgedev 3.3.7 does (its deploymentmanifest.py, modules.py, envvars.py, utility.py):
  1. variables: the process environment over .env (python-dotenv's `load_dotenv` does not override), over
     iotedgedev's own defaults (CONFIG_OUTPUT_DIR, MODULES_PATH, DEFAULT_PLATFORM...) and ours for the runtime:
     EDGE_RUNTIME_VERSION=1.6, EDGEAGENT_SCHEMA_VERSION=1.1, EDGEHUB_SCHEMA_VERSION=1.2 (iotedgedev 3.3.7 has none:
     its `iotedgedev new` writes them into .env);
  2. `$VAR` and `${VAR}` expanded across the template and every module.json (deploy/expansion.py);
  3. `${MODULES.<name>[.<platform>][.debug]}` and `${MODULEDIR<path>[.<platform>]}` as a user module's image become
     `<repository>:<version>[-$CONTAINER_TAG]-<platform>` from the solution's module.json files (deploy/solution.py);
  4. object createOptions become minified 512-character strings createOptions, createOptions01... (4 KB at most);
  5. `$schema-template` removed; the file named as iotedgedev names it, the platform always in the name:
     deployment.template.json -> deployment.<platform>.json, x.template.json -> x.<platform>.json.
Then checked: the public manifest schema (deploy/schema/), module names and keys, image references, routes (edgeHub's
grammar; module names compared as edgeHub does), a registry login for every registry an image is pulled from, and
this repository's module's env and desired properties by the module's own settings model. Every problem is listed
with file, JSON path and fix; if there is any, nothing is written. Warnings are written to stderr.

A variable set in the process environment wins over the same name in .env, as with iotedgedev; each .env value the
environment overrides is named (never its value) on stderr, so that a stray shell variable cannot change a manifest
silently. CI can inject the registry password that way without writing it to disk.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from dotenv import dotenv_values
from jsonschema import Draft4Validator

from deploy.checks import (
    Problem,
    Registries,
    Report,
    Warn,
    check_credentials,
    check_image,
    check_inference_settings,
    check_modules,
    check_routes,
    chunk_create_options,
    dig,
    jpath,
)
from deploy.expansion import Issue, Json, JsonPath, expand_outside_strings, load_expanded
from deploy.solution import ModuleJson, Solution, default_platforms, discover, images_of

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = Path(__file__).parent / "schema" / "azure-iot-edge-deployment-2.0.json"
AGENT: JsonPath = ("modulesContent", "$edgeAgent", "properties.desired")
HUB: JsonPath = ("modulesContent", "$edgeHub", "properties.desired")
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
OWN_MODULE_JSON = REPO_ROOT / "module.json"  # this repository's module: its env and desired properties are checked
# iotedgedev's EnvVars.load() puts these into the environment when unset or empty, so a template may use them.
IOTEDGEDEV_DEFAULTS = {
    "CONFIG_OUTPUT_DIR": "config",
    "DEPLOYMENT_CONFIG_TEMPLATE_FILE": "deployment.template.json",
    "DEPLOYMENT_CONFIG_DEBUG_TEMPLATE_FILE": "deployment.debug.template.json",
    "DEFAULT_PLATFORM": "amd64",
    "MODULES_PATH": "modules",
    "LOGS_PATH": "logs",
    "LOGS_CMD": "start /B start cmd.exe @cmd /k docker logs {0} -f",
}
# IoT Edge 1.6 LTS (serviced to 2028-11-14): its agent and hub images, and the schema versions its manifests use.
RUNTIME_DEFAULTS = {"EDGE_RUNTIME_VERSION": "1.6", "EDGEAGENT_SCHEMA_VERSION": "1.1", "EDGEHUB_SCHEMA_VERSION": "1.2"}
SCHEMA_FIXES = {
    "required": "add the missing key",
    "additionalProperties": "remove the key or correct its spelling",
    "enum": "use one of the allowed values",
    "type": "give it the type the schema expects",
    "pattern": "rename it to match the pattern",
}

__all__ = [
    "AGENT",
    "HUB",
    "ManifestError",
    "Problem",
    "Rendered",
    "dig",
    "expand",
    "generate",
    "jpath",
    "load_env",
    "load_json",
    "main",
    "render",
    "variable_resolver",
]


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


# --- shared with the local edge (localedge/deployment.py reads templates with these) --------------------------------


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


# --- the generator -----------------------------------------------------------------------------------------------------


@dataclass
class Rendered:
    """The manifests of one template, whether or not they may be written, with every problem and warning."""

    docs: dict[str, Json] = field(default_factory=dict)  # platform -> manifest
    names: dict[str, str] = field(default_factory=dict)  # platform -> file name
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    """Where a template keeps modulesContent: at the top, or under `content` (a layered deployment)."""

    content: JsonPath

    @property
    def layered(self) -> bool:
        return self.content[:1] == ("content",)

    @property
    def agent(self) -> JsonPath:
        return (*self.content, "$edgeAgent", "properties.desired")

    @property
    def hub(self) -> JsonPath:
        return (*self.content, "$edgeHub", "properties.desired")


def layout_of(doc: Json) -> Layout:
    if isinstance(doc, dict) and "content" in doc and isinstance(dig(doc, "content", "modulesContent"), dict):
        return Layout(("content", "modulesContent"))
    if isinstance(doc, dict) and "modulesContent" not in doc and "moduleContent" in doc:
        return Layout(("moduleContent",))  # the old spelling iotedgedev still reads
    return Layout(("modulesContent",))


def output_name(template: Path, platform: str) -> str:
    """iotedgedev's `get_deployment_manifest_name`, with the platform always in the name."""
    name = template.name
    if name.endswith(".template.json"):
        prefix = name[: -len(".template.json")]
    elif name.endswith(".json"):
        prefix = name[: -len(".json")]
    else:
        prefix = "deployment"
    return f"{prefix}.{platform}.json"


def variables_for(env_file: Path, environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str], list[str], dict[str, str]]:
    """(variables, the ones the user set, the .env names the environment overrides, defaults applied)."""
    user, overridden = load_env(env_file, environ)
    defaults = {k: v for k, v in {**IOTEDGEDEV_DEFAULTS, **RUNTIME_DEFAULTS}.items() if not user.get(k, "").strip()}
    return {**user, **defaults}, user, overridden, defaults


def _issue_problem(file: str, issue: Issue, env_file: Path) -> Problem:
    where = f"line {issue.where}" if isinstance(issue.where, int) else jpath(issue.where)
    name = issue.ref.name if issue.ref else ""
    if issue.kind == "unset":
        fix = f"add {name}=<value> to {env_file} (see .env.example), or export it"
        if isinstance(issue.where, int):
            fix += "; its value goes in as JSON text (e.g. a number), or quote the placeholder for a string"
        elif issue.ref is not None and not issue.ref.braced:
            fix += f" (iotedgedev would leave {issue.ref.text} in the manifest as written)"
    elif issue.kind == "shadowed":
        fix = f"unset {name} in the environment and .env: IoT Edge's own {issue.ref.text if issue.ref else ''} must stay"
    else:
        fix = "fix the syntax"
    return Problem(file, where, issue.what, fix)


def _explain_image(solution: Solution, image: str, platform: str) -> tuple[str, str]:
    """Why a user module's image placeholder was not replaced, and the fix."""
    found = solution.base_of(image)
    if found is None:
        return f"'{image}' is not a placeholder iotedgedev knows", "write ${MODULES.<folder>[.<platform>]}"
    base, suffix = found
    whole = f"${{{base}{'.' + suffix if suffix else ''}}}"
    if image != whole:
        return (
            f"'{image}': iotedgedev replaces a placeholder only when it is the whole image",
            f'write the image as just "{whole}"',
        )
    if base in solution.missing_dirs:
        return f"{image}: there is no module.json at {solution.missing_dirs[base]}", (
            "correct the path inside MODULEDIR<...> (relative to the template's folder)"
        )
    module: ModuleJson | None = solution.by_base.get(base)
    if module is None:
        name = base.removeprefix("MODULES.")
        modules_dir = solution.folder / solution.modules_path
        what = f"{image}: no module named '{name}' (iotedgedev reads {modules_dir}/{name}/module.json)"
        if (solution.folder / name / "module.json").is_file():
            return what, "the module folders are next to the template: set MODULES_PATH=. in .env"
        known = ", ".join(sorted(solution.module_folders)) or "none"
        return what, f"use one of the solution's modules ({known}), or add {modules_dir}/{name}/module.json"
    target = platform if not suffix else f"{platform}.debug" if suffix == "debug" else suffix
    return (
        f"{image}: {module.path} has no platform '{target}' (it has {', '.join(module.platforms) or 'none'})",
        f"generate another platform (--platform), or add '{target}' and its Dockerfile to image.tag.platforms",
    )


def _our_repository() -> str | None:
    try:
        repository = dig(json.loads(OWN_MODULE_JSON.read_text(encoding="utf-8")), "image", "repository")
    except (OSError, json.JSONDecodeError):
        return None
    return repository.rsplit("/", 1)[-1].lower() if isinstance(repository, str) and repository else None


def is_our_image(image: str, ours: str | None) -> bool:
    """This repository's module, by its image name (`.../edge-inference:<tag>`), whichever solution deploys it."""
    if ours is None or "${" in image:
        return False
    name = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    return name == ours


Entries = dict[str, tuple[Json, JsonPath]]


def _flattened(node: Json, nested: JsonPath, prefix: str, base: JsonPath) -> Entries:
    """name -> (value, path) under `node`: nested (`"properties.desired": {"modules": {...}}`) or flattened as layered
    deployments write it (`"properties.desired.modules.x": {...}`); iotedgedev reads both (its dot_to_json)."""
    found: Entries = {}
    inner = dig(node, *nested)
    if isinstance(inner, dict):
        found.update({name: (value, (*base, *nested, name)) for name, value in inner.items()})
    for key, value in node.items() if isinstance(node, dict) else []:
        if key == prefix and isinstance(value, dict):
            found.update({name: (item, (*base, key, name)) for name, item in value.items()})
        elif key.startswith(prefix + "."):
            found[key[len(prefix) + 1 :]] = (value, (*base, key))
    return found


def _groups(doc: Json, layout: Layout) -> Iterator[tuple[str, Entries]]:
    """(group, entries) for edgeAgent's systemModules and modules."""
    agent_path = (*layout.content, "$edgeAgent")
    agent = dig(doc, *agent_path)
    for group in ("systemModules", "modules"):
        yield group, _flattened(agent, ("properties.desired", group), f"properties.desired.{group}", agent_path)


def _routes(doc: Json, layout: Layout) -> Entries:
    hub_path = (*layout.content, "$edgeHub")
    return _flattened(dig(doc, *hub_path), ("properties.desired", "routes"), "properties.desired.routes", hub_path)


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
    expanded: Json,
    template_raw: Json,
    solution: Solution,
    platform: str,
    variables: Mapping[str, str],
    registries: Registries,
    file: str,
) -> tuple[Json, Report]:
    """The manifest for one platform and its problems (iotedgedev's build_push with no build and no push)."""
    report = Report(file)
    doc = copy.deepcopy(expanded)
    if isinstance(doc, dict):
        doc.pop("$schema-template", None)  # marks the template; the manifest schema allows modulesContent only
    layout = layout_of(doc)
    placeholders = solution.placeholders(platform, variables.get("CONTAINER_TAG", "").strip())
    images: dict[JsonPath, str] = {}
    ours = _our_repository()
    user_modules: Entries = {}
    for group, entries in _groups(doc, layout):
        for name, (module, base) in entries.items():
            settings = dig(module, "settings")
            image = dig(settings, "image")
            if isinstance(image, str):
                path = (*base, "settings", "image")
                if group == "modules" and image in placeholders:
                    image = settings["image"] = placeholders[image][0]
                elif group == "modules" and ("${MODULES." in image or "${MODULEDIR<" in image):
                    what, fix = _explain_image(solution, image, platform)
                    report.error(path, what, fix)
                images[path] = image
            if group == "modules" and is_our_image(str(image or ""), ours):
                desired_path = (*layout.content, name, "properties.desired")
                check_inference_settings(module, base, dig(doc, *desired_path), desired_path, report)
            if isinstance(settings, dict) and "createOptions" in settings:
                chunk_create_options(settings, (*base, "settings", "createOptions"), report)
        if group == "modules":
            check_modules(entries, report)
            user_modules = entries
    for path, image in images.items():
        check_image(image, path, report)
    hub_version = dig(doc, *layout.hub, "schemaVersion")
    check_routes(_routes(doc, layout), user_modules, report, hub_version, (*layout.hub, "schemaVersion"))
    creds_path = (*layout.agent, "runtime", "settings", "registryCredentials")
    if not layout.layered:  # a layer's registries are logged in by the base deployment it goes on
        check_credentials(images, dig(doc, *creds_path), dig(template_raw, *creds_path), creds_path, registries, report)
    reported = report.paths
    for path, text in strings(doc):  # unset variables were reported where they are written, when expanding
        if ("${MODULES." in text or "${MODULEDIR<" in text) and jpath(path) not in reported:
            report.error(
                path,
                f"'{text[:200]}' holds a ${{MODULES...}} or ${{MODULEDIR<...>}} placeholder, which is not replaced here",
                "iotedgedev replaces them only as a user module's whole settings.image: write the image there, or "
                "the image name itself",
            )
    if not layout.layered:  # iotedgedev validates full deployments only, and so does the public schema
        reported = report.paths  # our message at a path is more specific than the schema's
        report.errors += [p for p in schema_problems(doc, file) if p.where not in reported]
    return doc, report


def render(
    template: Path,
    env_file: Path | None = None,
    module_json: Path | None = None,
    module_name: str = "inference",
    platforms: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Rendered:
    """Every manifest of `template` with its problems, nothing written (ManifestError only when .env is missing)."""
    env_file = env_file if env_file is not None else template.parent / ".env"
    module_json = module_json if module_json is not None else template.parent / "module.json"
    out = Rendered()
    variables, user, overridden, defaults = variables_for(env_file, os.environ if environ is None else environ)
    out.notes += [f"{name} is taken from the environment, not from {env_file}" for name in overridden]
    file = str(template)
    try:
        text = template.read_text(encoding="utf-8")
    except FileNotFoundError:
        out.problems.append(Problem(file, "", "not found", "pass --template <path>, or run from the repository root"))
        return out
    expanded, issues = load_expanded(text, variables)
    out.problems += [_issue_problem(file, issue, env_file) for issue in issues]
    if expanded is None:
        return out
    if not isinstance(expanded, dict):
        out.problems.append(Problem(file, "$", "not a JSON object", "the file must hold one JSON object"))
        return out
    used = sorted(name for name in defaults if name in RUNTIME_DEFAULTS and re.search(rf"\$\{{?{name}\b", text))
    out.notes += [f"{name} is not set: {defaults[name]} (IoT Edge 1.6 LTS)" for name in used]
    raw = json.loads(expand_outside_strings(text, variables)[0])  # strings as written, for naming .env variables
    layout = layout_of(expanded)
    user_images: dict[str, str] = {}
    for group, entries in _groups(expanded, layout):
        if group == "modules":
            user_images.update(images_of({name: module for name, (module, _) in entries.items()}))
    solution = discover(template, variables, user_images, module_json, module_name)
    for issue in solution.issues:
        out.problems.append(Problem(str(issue.path), issue.where, issue.what, issue.fix))
    chosen = list(platforms or [])
    if not chosen and user.get("DEFAULT_PLATFORM", "").strip():
        chosen = [user["DEFAULT_PLATFORM"].strip()]
    chosen = chosen or default_platforms(solution, user_images)
    examples = _examples(env_file)
    registries = Registries(env_file, variables, examples)
    for platform in dict.fromkeys(chosen):
        doc, report = build(expanded, raw, solution, platform, variables, registries, file)
        out.docs[platform], out.names[platform] = doc, output_name(template, platform)
        out.problems += report.errors
        out.warnings += report.warnings
    out.problems = list(dict.fromkeys(out.problems))
    out.warnings = list(dict.fromkeys(out.warnings))
    return out


def _examples(env_file: Path) -> dict[str, str]:
    example = env_file.with_name(".env.example")
    if not example.is_file():
        return {}
    return {k: v for k, v in dotenv_values(example).items() if v is not None}


def _print_warning(problem: Problem) -> None:
    print(f"warning: {problem}", file=sys.stderr)


def generate(
    template: Path,
    env_file: Path | None = None,
    module_json: Path | None = None,
    module_name: str = "inference",
    platforms: Sequence[str] | None = None,
    out_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    warn: Warn | None = None,
) -> list[Path]:
    """Write <out_dir>/<name>.<platform>.json for each platform; out_dir defaults to the template's folder's config/.

    Raises ManifestError listing every problem; then nothing is written. Warnings go to `warn` (default: stderr).
    """
    rendered = render(template, env_file, module_json, module_name, platforms, environ)
    for note in rendered.notes:
        print(f"note: {note}", file=sys.stderr)
    if rendered.problems:
        raise ManifestError(rendered.problems)
    for problem in rendered.warnings:
        (warn or _print_warning)(problem)
    out_dir = out_dir if out_dir is not None else template.parent / "config"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for platform, doc in rendered.docs.items():
        path = out_dir / rendered.names[platform]
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy",
        description="Generate <out>/deployment.<platform>.json from a deployment template, as iotedgedev genconfig does.",
    )
    parser.add_argument("--template", type=Path, default=Path("deployment.template.json"))
    parser.add_argument(
        "--env", type=Path, default=None, help="the .env file (default: the template's folder's; the environment overrides it)"
    )
    parser.add_argument(
        "--module-json", type=Path, default=None, help="the template folder's own module.json (default: that folder's)"
    )
    parser.add_argument(
        "--module-name", default="inference", help="the name ${MODULES.<name>} gives the template folder's own module.json"
    )
    parser.add_argument(
        "--platform",
        action="append",
        dest="platforms",
        help="repeatable; default: DEFAULT_PLATFORM if set, else every platform the template's modules share",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: config/ in the template's folder")
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
