"""iotedgedev's solution model: the module.json files of a solution and the image placeholders they answer.

As iotedgedev 3.3.7 (`Modules.build_push`, `Module`), for a template in folder T:
  - every folder F of `T/$MODULES_PATH` (default `modules`) holding a module.json answers `${MODULES.F...}`: the
    name is the folder's, whatever the module.json says;
  - `${MODULEDIR<path>...}` in a user module's image reads `T/path/module.json` (a missing one stops iotedgedev);
  - per platform P of the module.json's `image.tag.platforms`: `${X.P}`; for the platform generated, G:
    `${X}` when P == G and `${X.debug}` when P == G + ".debug";
  - the image is `<image.repository lowercased>:<image.tag.version>[-$CONTAINER_TAG]-<P>`;
  - a placeholder is replaced only when it is a user module's whole `settings.image` (edgeAgent's `modules`).
One addition: a module.json in T itself (this repository: a single-module solution) answers `${MODULES.<name>}`
for the name given (`--module-name`, default `inference`) unless `T/$MODULES_PATH/<name>/module.json` exists.
iotedgedev ignores that file; deploy/README and the reference test say how it is compared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploy.expansion import Issue, Json, load_expanded

MODULEDIR = re.compile(r"\$\{MODULEDIR<(.+)>(\..+)?\}")  # iotedgedev's moduledir_placeholder_pattern, used with search
MODULES_REF = re.compile(r"\$\{MODULES\.([^.}]+)((?:\.[^}]*)?)\}")
DEFAULT_VERSION = "0.0.0"  # iotedgedev's, when image.tag.version is missing


@dataclass(frozen=True)
class ModuleJson:
    """One module.json, expanded as iotedgedev reads it."""

    path: Path
    repository: str
    version: str
    platforms: Mapping[str, str]

    def image(self, platform: str, container_tag: str) -> str:
        tag = f"-{container_tag}" if container_tag else ""
        return f"{self.repository.lower()}:{self.version}{tag}-{platform}"


@dataclass(frozen=True)
class ModuleJsonIssue:
    path: Path
    where: str
    what: str
    fix: str


def read_module_json(path: Path, variables: Mapping[str, str]) -> tuple[ModuleJson | None, list[ModuleJsonIssue]]:
    """A module.json expanded like iotedgedev's `Module.load_module_json` (expandvars over the whole file)."""
    issues: list[ModuleJsonIssue] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        return None, [ModuleJsonIssue(path, "", f"cannot be read: {err.strerror}", "check the path")]
    doc, found = load_expanded(text, variables)
    for issue in found:
        issues.append(_issue(path, issue))
    if doc is None:
        return None, issues
    image = doc.get("image") if isinstance(doc, dict) else None
    if not isinstance(image, dict):
        issues.append(ModuleJsonIssue(path, "$.image", "missing or not an object", 'add "image": {"repository", "tag"}'))
        return None, issues
    repository = image.get("repository", "")
    tag = image.get("tag")
    tag = tag if isinstance(tag, dict) else {}
    version = tag.get("version", DEFAULT_VERSION)
    platforms = tag.get("platforms", {})
    if not isinstance(repository, str) or not repository:
        issues.append(
            ModuleJsonIssue(path, "$.image.repository", "missing", 'set it, e.g. "${CONTAINER_REGISTRY_SERVER}/mymodule"')
        )
    elif repository.startswith("/") or "//" in repository or re.search(r"\s", repository):
        # e.g. an empty CONTAINER_REGISTRY_SERVER leaves "/edge-inference": not an image name the runtime can pull
        issues.append(
            ModuleJsonIssue(
                path,
                "$.image.repository",
                f"expands to '{repository}', not an image name",
                "set the variables it uses (e.g. CONTAINER_REGISTRY_SERVER) in .env",
            )
        )
    if not isinstance(version, str) or not version:
        issues.append(ModuleJsonIssue(path, "$.image.tag.version", "missing or not a string", 'set it, e.g. "0.1.0"'))
        version = DEFAULT_VERSION
    if not isinstance(platforms, dict) or not platforms:
        issues.append(
            ModuleJsonIssue(
                path,
                "$.image.tag.platforms",
                "missing",
                'map each platform to its Dockerfile, e.g. {"amd64": "./Dockerfile"}',
            )
        )
        platforms = {}
    if not isinstance(repository, str):
        return None, issues
    # Unset variables and a bad repository are reported above; the placeholders still resolve, so that a missing
    # CONTAINER_REGISTRY_SERVER is one problem and not also "no module named ...".
    return ModuleJson(path, repository, version, {str(k): str(v) for k, v in platforms.items()}), issues


def _issue(path: Path, issue: Issue) -> ModuleJsonIssue:
    where = f"line {issue.where}" if isinstance(issue.where, int) else _dotted(issue.where)
    name = issue.ref.name if issue.ref else ""
    fix = f"set {name} in .env (or the environment)" if issue.kind == "unset" else "fix the JSON"
    return ModuleJsonIssue(path, where, issue.what, fix)


def _dotted(path: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


@dataclass
class Solution:
    """The module.json files a template can name, found as iotedgedev finds them."""

    folder: Path
    modules_path: str
    by_base: dict[str, ModuleJson] = field(default_factory=dict)  # "MODULES.x" / "MODULEDIR<d>" -> module.json
    module_folders: dict[str, Path] = field(default_factory=dict)  # name -> folder holding its module.json
    issues: list[ModuleJsonIssue] = field(default_factory=list)
    missing_dirs: dict[str, Path] = field(default_factory=dict)  # MODULEDIR<d> whose module.json is missing

    def placeholders(self, platform: str, container_tag: str) -> dict[str, tuple[str, ModuleJson]]:
        """Placeholder text -> (image, module.json) for one generated platform."""
        out: dict[str, tuple[str, ModuleJson]] = {}
        for base, module in self.by_base.items():
            for target in module.platforms:
                image = module.image(target, container_tag)
                out[f"${{{base}.{target}}}"] = (image, module)
                if target == platform:
                    out[f"${{{base}}}"] = (image, module)
                elif target == f"{platform}.debug":
                    out[f"${{{base}.debug}}"] = (image, module)
        return out

    def base_of(self, placeholder: str) -> tuple[str, str] | None:
        """("MODULES.x" or "MODULEDIR<d>", suffix) of an image placeholder, or None."""
        if (m := MODULEDIR.search(placeholder)) is not None:
            return f"MODULEDIR<{m.group(1)}>", (m.group(2) or "")[1:]
        if (m := MODULES_REF.search(placeholder)) is not None:
            return f"MODULES.{m.group(1)}", m.group(2)[1:]
        return None


def discover(
    template: Path,
    variables: Mapping[str, str],
    user_images: Mapping[str, str],
    own_module_json: Path | None,
    own_name: str,
) -> Solution:
    """The solution around `template`: `$MODULES_PATH/*/module.json`, MODULEDIR targets, and T/module.json."""
    folder = template.parent
    modules_path = variables.get("MODULES_PATH") or "modules"
    solution = Solution(folder, modules_path)
    modules_dir = folder / modules_path
    if modules_dir.is_dir():
        for child in sorted(modules_dir.iterdir()):
            if (child / "module.json").is_file():
                _add(solution, f"MODULES.{child.name}", child / "module.json", variables)
                solution.module_folders[child.name] = child
    if own_module_json is not None and own_module_json.is_file() and f"MODULES.{own_name}" not in solution.by_base:
        _add(solution, f"MODULES.{own_name}", own_module_json, variables)
        solution.module_folders[own_name] = own_module_json.parent
    for image in user_images.values():
        match = MODULEDIR.search(image)
        if match is None:
            continue
        written = match.group(1)
        base = f"MODULEDIR<{written}>"
        if base in solution.by_base or base in solution.missing_dirs:
            continue
        # A Windows template writes `.\\dir`: iotedgedev on Linux then finds no module.json; the path is the same here.
        target = folder / written.replace("\\", "/") / "module.json"
        if target.is_file():
            _add(solution, base, target, variables)
        else:
            solution.missing_dirs[base] = target
    return solution


def _add(solution: Solution, base: str, path: Path, variables: Mapping[str, str]) -> None:
    module, issues = read_module_json(path, variables)
    solution.issues += issues
    if module is not None:
        solution.by_base[base] = module


def default_platforms(solution: Solution, user_images: Mapping[str, str]) -> list[str]:
    """The platforms every module named without a platform (`${MODULES.x}`, `${MODULEDIR<d>}`) has, in the first's
    order; `amd64` (iotedgedev's DEFAULT_PLATFORM) when the template names none that way."""
    shared: list[str] | None = None
    for image in user_images.values():
        found = solution.base_of(image)
        if found is None or found[1] not in ("", "debug") or found[0] not in solution.by_base:
            continue
        platforms = [p for p in solution.by_base[found[0]].platforms if not p.endswith(".debug")]
        shared = platforms if shared is None else [p for p in shared if p in platforms]
    return shared or ["amd64"]


def images_of(modules: Json) -> dict[str, str]:
    """name -> settings.image (strings only) of a `modules` object."""
    out: dict[str, str] = {}
    for name, module in modules.items() if isinstance(modules, dict) else []:
        settings = module.get("settings") if isinstance(module, dict) else None
        image = settings.get("image") if isinstance(settings, dict) else None
        if isinstance(image, str):
            out[name] = image
    return out
