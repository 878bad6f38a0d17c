"""`python -m deploy` against iotedgedev 3.3.7 itself, side by side on the same solutions (tests/deploy/cases.py).

Live when iotedgedev is installed (.venv-iotedgedev, which needs Python < 3.10; see deploy/README.md): each case
runs `iotedgedev solution genconfig -f T -P P --fail-on-validation-error` on a scratch copy, its schema download
answered on loopback from deploy/schema (so its validation really runs), and our generator on another copy with
the same .env and environment. Otherwise the cases compare with golden files recorded from iotedgedev (each with
the command that produced it), and a warning says so. Compared: the written manifests path by path (images,
createOptions chunks, env, desired properties...; key order aside), the file names, and each tool's verdict.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.cases import CASES, PUBLIC_CASES
from tests.deploy.harness import (
    GOLDENS,
    SOLUTIONS,
    Case,
    Reference,
    SchemaProxy,
    describe,
    differences,
    iotedgedev_executable,
    load_golden,
    prepare_home,
    run_environment,
    run_iotedgedev,
    run_ours,
)
from tests.deploy.public import PUBLIC, public_dir

pytestmark = pytest.mark.timeout(300)

EXECUTABLE = iotedgedev_executable()
Environment = dict[str, str]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SchemaProxy, Environment] | None]:
    if EXECUTABLE is None:
        warnings.warn(
            "iotedgedev 3.3.7 is not installed (.venv-iotedgedev needs Python < 3.10): comparing with golden files "
            f"recorded from it ({GOLDENS.relative_to(GOLDENS.parents[2])}, each with its command), not with the tool",
            stacklevel=1,
        )
        yield None
        return
    home = tmp_path_factory.mktemp("iotedgedev-home")
    prepare_home(home)
    with SchemaProxy() as proxy:
        yield proxy, run_environment(home, proxy.url, EXECUTABLE)


def _source(case: Case) -> Path:
    if not case.public:
        return SOLUTIONS / case.solution
    folder = public_dir(case.solution)
    if folder is None:
        public = PUBLIC[case.solution]
        pytest.skip(
            f"public solution {case.solution} ({public.repo}@{public.commit[:12]}, {public.folder}) is not laid out: "
            "see tests/deploy/public.py"
        )
    return folder


def _reference(case: Case, source: Path, live: Any, scratch: Path) -> tuple[Reference, Environment]:
    if live is not None and EXECUTABLE is not None:
        _, environ = live
        return run_iotedgedev(EXECUTABLE, case, source, scratch, environ), environ
    reference = load_golden(case, source if case.public else None)
    if reference is None:
        if case.public:
            pytest.skip(f"no golden file for {case.id} beside the public solution (python -m tests.deploy.record)")
        pytest.fail(f"no golden file for {case.id}: record them with python -m tests.deploy.record")
    return reference, run_environment(Path("/nonexistent-home"), "http://127.0.0.1:9", None)


@pytest.mark.parametrize("case", [*CASES, *PUBLIC_CASES], ids=lambda c: c.id)
def test_side_by_side_with_iotedgedev(case: Case, live: Any, tmp_path: Path) -> None:
    source = _source(case)
    reference, environ = _reference(case, source, live, tmp_path / "iotedgedev")
    ours = run_ours(case, source, tmp_path / "ours", environ)

    said = "\n".join(reference.messages)
    assert reference.verdict() == case.iotedgedev, f"iotedgedev {reference.verdict()} (exit {reference.exit_code}):\n{said}"
    for text in case.iotedgedev_says:
        assert text in said
    if reference.manifest is not None and "content" not in reference.manifest:
        assert reference.schema_served, "iotedgedev skipped its schema validation: the schema was not served to it"

    problems, found_warnings = "\n".join(map(str, ours.problems)), "\n".join(map(str, ours.warnings))
    assert ("refused" if ours.problems else "generated") == case.ours, problems
    for text in case.problems:
        assert text in problems
    for text in case.warnings:
        assert text in found_warnings

    if live is not None and not case.public:  # the golden files CI compares with must say what the tool says now
        golden = load_golden(case)
        stale = golden is None or (golden.manifest, golden.exit_code) != (reference.manifest, reference.exit_code)
        assert not stale, f"tests/deploy/goldens/{case.id}.json is out of date: run python -m tests.deploy.record"

    if reference.manifest is not None:
        expected_name = case.file_name or f"config/{ours.names[case.platform]}"
        assert reference.written == expected_name
        found = list(differences(reference.manifest, ours.docs[case.platform]))
        unexplained = [d for d in found if d[0] not in case.differences]
        hint = "" if live is not None else " (golden file: if the solution changed, re-record it: python -m tests.deploy.record)"
        assert not unexplained, f"our manifest differs from iotedgedev's{hint}:\n" + describe(unexplained)
        assert {d[0] for d in found} == set(case.differences), "an expected difference is gone: update tests/deploy/cases.py"


def test_every_golden_file_says_how_it_was_recorded() -> None:
    for case in CASES:
        reference = load_golden(case)
        assert reference is not None, f"no golden file for {case.id}"
        assert reference.command[:3] == ["iotedgedev", "solution", "genconfig"] and reference.iotedgedev == "3.3.7"
        assert reference.python.startswith("3.") and int(reference.python.split(".")[1]) < 10
