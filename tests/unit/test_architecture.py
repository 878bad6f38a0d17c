"""The floor plan, checked: the SDK-free core with adapters around it, and no package in a circle.

Read from the source with ast (nothing is imported), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from app.settings import REPO_ROOT

PACKAGES = ("app", "edgekit", "localedge", "sensor", "deploy", "bench")
ADAPTERS = ("app.edgehub", "app.http", "app.commands", "app.main")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from app import main`
    return found


MODULES: dict[str, set[str]] = {
    _module_name(path): _imports(path, _module_name(path))
    for package in PACKAGES
    for path in sorted((REPO_ROOT / package).rglob("*.py"))
}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def importers_of(target: str) -> set[str]:
    return {m for m, imports in MODULES.items() if any(_under(i, target) for i in imports)}


def test_the_modules_were_found() -> None:
    assert {"app.core.pipeline", "app.edgehub.module", "app.http.server", "edgekit.routes", "localedge.edge"} <= set(MODULES)


@pytest.mark.parametrize(
    ("library", "room"),
    [("azure.iot.device", "app.edgehub"), ("aiohttp", "app.http"), ("prometheus_client", "app.http")],
)
def test_only_its_adapter_imports_a_transport_library(library: str, room: str) -> None:
    inside_app = {m for m in importers_of(library) if _under(m, "app")}
    assert inside_app, f"nothing in app/ imports {library}: is the test still looking at the right thing?"
    assert {m for m in inside_app if not _under(m, room)} == set()


def test_the_core_imports_no_adapter_and_no_transport() -> None:
    core = {m: imports for m, imports in MODULES.items() if _under(m, "app.core")}
    forbidden = (*ADAPTERS, "azure", "aiohttp", "prometheus_client", "paho")
    offenders = {m: sorted(i for i in imports if any(_under(i, f) for f in forbidden)) for m, imports in core.items()}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_edgekit_imports_none_of_the_programs_that_share_it() -> None:
    programs = ("app", "localedge", "sensor", "deploy", "bench")
    offenders = {m: i for m, imports in MODULES.items() if _under(m, "edgekit") for i in imports if i.split(".")[0] in programs}
    assert offenders == {}


def test_the_sensor_stand_in_needs_nothing_of_the_inference_module() -> None:
    assert {m for m in importers_of("app") if _under(m, "sensor")} == set()


def _room(module: str) -> str:
    """The package a module lives in: app's rooms (app.core, app.http...) count as packages of their own."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "app" and len(parts) > 1 else parts[0]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _graph(key: object) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imports in MODULES.items():
        for imported in imports:
            target = next((m for m in (imported, imported.rpartition(".")[0]) if m in MODULES), None)
            if target is not None and key(module) != key(target):  # type: ignore[operator]
                graph[key(module)].add(key(target))  # type: ignore[operator]
    return graph


def test_no_package_imports_in_a_circle() -> None:
    assert _cycle(_graph(_room)) is None


def test_no_module_imports_in_a_circle() -> None:
    assert _cycle(_graph(lambda m: m)) is None


def test_a_cycle_would_be_found() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_the_module_needs_only_app_and_edgekit_of_this_repository() -> None:
    """What the images copy (Dockerfile: COPY app/, COPY edgekit/)."""
    repo_packages = {"app", "edgekit", "localedge", "sensor", "deploy", "bench", "tests"}
    used = {i.split(".")[0] for m, imports in MODULES.items() if _under(m, "app") for i in imports}
    assert used & repo_packages == {"app", "edgekit"}
