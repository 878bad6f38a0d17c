"""A module's `createOptions` as a process can honour them: `Env`, `WorkingDir` and `HostConfig.Binds`.

Docker's semantics, kept where a process allows:
- `Env` (["K=V", ...]) is merged over the manifest's `env`, as edgelet does (edgelet-docker's `merge_env`
  applies createOptions' Env after the module's env: createOptions wins).
- `HostConfig.Binds` ("source:target[:options]"): a process cannot mount, so the host path is created as Docker
  creates a missing bind source (a directory), and wherever the module would name the container path (env values,
  WorkingDir) it is given the host path instead. A source that is a name, not a path, is a Docker named volume: a
  directory of the run. A relative path is refused, as Docker refuses it.
- `WorkingDir`: the module's working directory, mapped through the binds.

Everything else in createOptions (HostConfig.Memory, NanoCpus, PortBindings, ...) is not applied locally.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # Docker's rule for a named volume
BIND_OPTIONS = {"ro", "rw", "z", "Z", "shared", "rshared", "slave", "rslave", "private", "rprivate", "nocopy"}
SPLIT_KEYS = ("createOptions", *(f"createOptions{i:02d}" for i in range(1, 8)))  # the deployed manifest's chunks


@dataclass(frozen=True)
class Bind:
    source: str  # an absolute host path, or a named volume
    target: str  # the path inside the container
    read_only: bool = False

    @property
    def named_volume(self) -> bool:
        return not self.source.startswith("/")

    def host_path(self, volumes: Path) -> Path:
        """Where the target is on this machine: the source path, or the named volume's directory under `volumes`."""
        return volumes / self.source if self.named_volume else Path(self.source)


@dataclass(frozen=True)
class CreateOptions:
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    binds: tuple[Bind, ...] = ()


def raw_create_options(settings: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The createOptions object of a module's `settings`: an object (template) or JSON text, possibly split into
    `createOptions`, `createOptions01` ... `createOptions07` (a deployed manifest); (value, problem)."""
    value = settings.get("createOptions")
    if value is None or isinstance(value, dict):
        return value or {}, None
    if not isinstance(value, str):
        return {}, f"createOptions must be an object or JSON text, not {type(value).__name__}"
    text = "".join(str(settings.get(key, "")) for key in SPLIT_KEYS)
    try:
        doc = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        return {}, f"createOptions is not JSON: {exc}"
    if not isinstance(doc, dict):
        return {}, "createOptions must be a JSON object"
    return doc, None


def parse_bind(text: Any) -> tuple[Bind | None, str | None]:
    """One `HostConfig.Binds` entry; (bind, problem)."""
    if not isinstance(text, str):
        return None, f'HostConfig.Binds entry {text!r}: write "/host/path:/container/path[:ro]"'
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        return None, f'HostConfig.Binds entry {text!r}: write "/host/path:/container/path[:ro]"'
    source, target = parts[0], parts[1]
    options = set(parts[2].split(",")) if len(parts) == 3 else set()
    if not source.startswith("/") and not VOLUME_NAME.match(source):
        return None, f"HostConfig.Binds entry {text!r}: the host path {source!r} is relative; give an absolute path"
    if not target.startswith("/"):
        return None, f"HostConfig.Binds entry {text!r}: the container path {target!r} must be absolute"
    if unknown := options - BIND_OPTIONS:
        return None, f"HostConfig.Binds entry {text!r}: unknown option(s) {', '.join(sorted(unknown))}"
    return Bind(source, str(PurePosixPath(target)), read_only="ro" in options), None


def parse_env(entries: Any, problems: list[str]) -> dict[str, str]:
    if not isinstance(entries, list):
        problems.append('createOptions.Env must be a list of "NAME=VALUE" strings')
        return {}
    env: dict[str, str] = {}
    for entry in entries:
        name, _, value = entry.partition("=") if isinstance(entry, str) else ("", "", "")
        if not name:
            problems.append(f'createOptions.Env entry {entry!r}: write "NAME=VALUE"')
            continue
        env[name] = value  # "NAME" alone: Docker passes the host's value or none; here an empty one
    return env


def parse_create_options(settings: Mapping[str, Any]) -> tuple[CreateOptions, list[str]]:
    """createOptions' Env, WorkingDir and Binds from a module's `settings`; (options, problems)."""
    doc, problem = raw_create_options(settings)
    problems = [problem] if problem else []
    env = parse_env(doc["Env"], problems) if "Env" in doc else {}
    working_dir = doc.get("WorkingDir")
    if working_dir is not None and (not isinstance(working_dir, str) or not working_dir.startswith("/")):
        problems.append(f"createOptions.WorkingDir {working_dir!r} must be an absolute path")
        working_dir = None
    host_config = doc.get("HostConfig") or {}
    raw_binds = host_config.get("Binds") or [] if isinstance(host_config, dict) else []
    binds: list[Bind] = []
    for entry in raw_binds if isinstance(raw_binds, list) else [raw_binds]:
        bind, problem = parse_bind(entry)
        if problem:
            problems.append(problem)
        elif bind is not None:
            binds.append(bind)
    return CreateOptions(env, working_dir, tuple(binds)), problems


def host_path(path: str, mounts: Sequence[tuple[str, Path]]) -> str:
    """`path` as the module reaches it here: under a bind's container path it becomes the host path (the longest
    target wins, as the innermost mount shadows the outer ones); anything else is left as it is."""
    for target, host in sorted(mounts, key=lambda m: len(m[0]), reverse=True):
        if path == target:
            return str(host)
        if path.startswith(target.rstrip("/") + "/"):
            return str(host / path[len(target.rstrip("/")) + 1 :])
    return path


def mount(binds: Sequence[Bind], volumes: Path) -> list[tuple[str, Path]]:
    """Create each bind's host directory (Docker creates a missing bind source) and return (target, host) pairs."""
    mounts = []
    for bind in binds:
        host = bind.host_path(volumes)
        host.mkdir(parents=True, exist_ok=True)
        mounts.append((bind.target, host))
    return mounts


@dataclass(frozen=True)
class Applied:
    """createOptions as applied to one module process."""

    env: dict[str, str]  # its env with container paths made host paths
    cwd: Path | None  # its working directory (None: the default)
    notes: list[str]  # what to tell the user at start


def apply(name: str, env: Mapping[str, str], options: CreateOptions, volumes: Path) -> Applied:
    """Create the binds' host directories, rewrite env values that name a container path, map WorkingDir."""
    mounts = mount(options.binds, volumes)
    notes = [
        f"module '{name}': {target} is {host}" + (" (read-only is not enforced)" if bind.read_only else "")
        for bind, (target, host) in zip(options.binds, mounts, strict=True)
    ]
    mapped = {k: host_path(v, mounts) if v.startswith("/") else v for k, v in env.items()}
    notes += [f"module '{name}': env {k}={mapped[k]} (was {env[k]})" for k in env if mapped[k] != env[k]]
    cwd = None
    if options.working_dir is not None:
        here = Path(host_path(options.working_dir, mounts))
        if here.is_dir() or str(here) != options.working_dir:
            here.mkdir(parents=True, exist_ok=True)  # under a bind: Docker creates a missing WorkingDir too
            cwd = here
            notes.append(f"module '{name}': working directory {here}")
        else:
            notes.append(f"module '{name}': WorkingDir {options.working_dir} does not exist here; it runs in the default")
    return Applied(mapped, cwd, notes)
