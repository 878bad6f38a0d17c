"""Azure ML compatibility: this module's HTTP endpoint answers like Azure ML's own inference server.

For each scoring script of the corpus (real public Azure ML samples, unchanged, installed outside the repository:
tests/azureml/corpus.py; skipped where it is not installed), the
deployment Azure ML would make of it (tests/azureml/models.py) is served twice: by azmlinfsrv 1.5.1 (the
reference, tests/azureml/reference.py) and by `python -m app serve` with AZUREML_ENTRY_SCRIPT and
AZUREML_MODEL_DIR. Every request of tests/azureml/cases.py goes to both; status, body and media type must
match, with only the differences tests/azureml/differences.py allows.

The reference is live when its venv exists or can be built (AZUREML_REFERENCE_VENV, default .venv-azmlinfsrv;
pip needs PyPI), else the answers recorded in tests/azureml/golden/ are used, and the run says so.
AZUREML_REFERENCE=live|golden forces one (live fails rather than falling back).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.azureml import corpus, differences
from tests.azureml.cases import ALL_CASES, Case
from tests.azureml.models import SAMPLES, Deployment, deploy
from tests.azureml.reference import (
    Answer,
    ReferenceUnavailable,
    ensure_reference_venv,
    golden_path,
    load_golden,
    reference_answers,
    reference_venv,
    running_ours,
    send,
)

SLUGS = sorted(SAMPLES)
PAIRS = [(slug, case.id) for slug in SLUGS for case in ALL_CASES[slug]]
CASES = {(slug, case.id): case for slug in SLUGS for case in ALL_CASES[slug]}

BUILD_TIMEOUT_S = 900  # building the reference venv: ~80 s measured with a warm pip cache, PyPI otherwise
CASE_TIMEOUT_S = 300  # a case: its slug's first one starts the reference (~5 s) and our server


class ReferenceWarning(UserWarning):
    """The reference answers came from recorded golden files, not from a running azmlinfsrv."""


@dataclass(frozen=True)
class ReferenceSource:
    live: bool
    venv: Path | None
    why: str

    @property
    def label(self) -> str:
        return f"live azmlinfsrv ({self.venv})" if self.live else f"recorded golden files ({self.why})"


def _announce(config: pytest.Config, line: str) -> None:
    """A line on the terminal now, whatever the capture mode (the run has to say which reference it used)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line(line)


@pytest.fixture(scope="session")
def reference_source(request: pytest.FixtureRequest) -> ReferenceSource:
    wanted = os.environ.get("AZUREML_REFERENCE", "auto")
    if wanted not in ("auto", "live", "golden"):
        pytest.fail(f"AZUREML_REFERENCE={wanted!r}: use live, golden or auto")
    if wanted == "golden":
        source = ReferenceSource(False, None, "AZUREML_REFERENCE=golden")
    else:
        try:
            source = ReferenceSource(True, ensure_reference_venv(build=True), "")
        except ReferenceUnavailable as exc:
            if wanted == "live":
                pytest.fail(f"AZUREML_REFERENCE=live but the reference venv is unavailable: {exc}")
            source = ReferenceSource(False, None, f"reference venv unavailable: {exc}")
    if not source.live:
        warnings.warn(ReferenceWarning(f"Azure ML reference: {source.label}"), stacklevel=1)
    _announce(request.config, f"\nAzure ML reference: {source.label}")
    return source


@dataclass
class SlugServers:
    """Per slug: its deployment, the reference's answers by case id, and our server (started on demand)."""

    deployment: Deployment
    reference: dict[str, Answer]
    our_url: str | None = None
    our_error: str | None = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


class Servers:
    """Deploys each slug once, gets the reference's answers once (live: azmlinfsrv is started, asked every case,
    stopped; golden: read from the file), and keeps our server running for one slug at a time."""

    def __init__(self, source: ReferenceSource, factory: pytest.TempPathFactory) -> None:
        self.source = source
        self.factory = factory
        self.slugs: dict[str, SlugServers] = {}
        self.running: str | None = None

    def slug(self, slug: str) -> SlugServers:
        if slug not in self.slugs:
            deployment = deploy(slug, self.factory.mktemp(slug) / "app")
            live = self.source.live
            reference = reference_answers(deployment, self.source.venv) if live else golden_answers(slug)
            self.slugs[slug] = SlugServers(deployment, reference)
        return self.slugs[slug]

    def ours(self, slug: str) -> SlugServers:
        state = self.slug(slug)
        if self.running != slug:
            if self.running is not None:
                self.slugs[self.running].stack.close()
            self.running = slug
            d = state.deployment
            try:
                state.our_url = state.stack.enter_context(running_ours(d.script, d.model_dir, app_root=d.app_root))
            except Exception as exc:  # every case of the slug reports it, without starting again
                state.our_error = f"{type(exc).__name__}: {exc}"
        return state

    def close(self) -> None:
        for state in self.slugs.values():
            state.stack.close()


def golden_answers(slug: str) -> dict[str, Answer]:
    """The recorded answers of `slug`, after checking they were recorded for today's requests."""
    path = golden_path(slug)
    if not path.exists():
        pytest.fail(f"no live reference and no {path}: record it with `python -m tests.azureml.reference record`")
    document = load_golden(slug)
    recorded = {entry["request"]["id"]: entry for entry in document["answers"]}
    stale = [c.id for c in ALL_CASES[slug] if c.id not in recorded or recorded[c.id]["request"] != c.as_dict()]
    if stale:
        pytest.fail(
            f"{path} is stale for cases {stale}: re-record it with `python -m tests.azureml.reference record --slug {slug}`"
        )
    return {case_id: Answer.from_record(entry["answer"]) for case_id, entry in recorded.items()}


@pytest.fixture(scope="module")
def servers(reference_source: ReferenceSource, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    pool = Servers(reference_source, tmp_path_factory)
    try:
        yield pool
    finally:
        pool.close()


def _show(answer: Answer, limit: int = 600) -> str:
    body = answer.body if len(answer.body) <= limit else answer.body[:limit] + b"..."
    return f"{answer.status} {answer.content_type!r} {body!r}"


def _request(case: Case) -> str:
    body = case.body if len(case.body) <= 300 else case.body[:300] + b"..."
    return f"{case.method} {case.path} headers={list(case.headers)} body={body!r}"


def differences_between(slug: str, case: Case, reference: Answer, ours: Answer) -> list[str]:
    """What differs beyond differences.py's allowances (empty: the same answer)."""
    allowance = differences.ALLOWED.get((slug, case.id))
    if allowance is not None and allowance.same(reference, ours):
        return []
    found = []
    if reference.status != ours.status:
        found.append(f"status {ours.status}, reference {reference.status}")
    ref_json, our_json = reference.json(), ours.json()
    ref_is_json, our_is_json = ref_json is not differences.NOT_JSON, our_json is not differences.NOT_JSON
    if ref_is_json and our_is_json:
        if not differences.json_equal(ref_json, our_json):
            found.append("JSON body differs")
    elif reference.body != ours.body:
        found.append("body differs" + (" (one is JSON, the other not)" if ref_is_json != our_is_json else ""))
    ref_type, our_type = differences.media_type(reference.content_type), differences.media_type(ours.content_type)
    if ref_type != our_type:
        found.append(f"media type {our_type!r}, reference {ref_type!r}")
    return found


@pytest.mark.timeout(60)
@pytest.mark.parametrize("slug", SLUGS)
def test_corpus_is_as_published(slug: str) -> None:
    """Every corpus file is byte-for-byte the published one: its git blob hash is the one its source file records."""
    if not (corpus.root() / slug).is_dir():
        corpus.directory(slug)  # skips: not installed on this machine
    assert corpus.problems(slug) == []
    assert SAMPLES[slug].entry_script in {source.name for source in corpus.sources(slug)}


@pytest.mark.timeout(BUILD_TIMEOUT_S)
def test_reference_is_available(reference_source: ReferenceSource) -> None:
    """Which reference this run compares against (built here when missing); with golden files, that they all exist."""
    if reference_source.live:
        assert reference_source.venv is not None and reference_source.venv == reference_venv()
    else:
        missing = [slug for slug in SLUGS if not golden_path(slug).exists()]
        assert not missing, f"[reference: {reference_source.label}] no golden file for {missing}"


@pytest.mark.timeout(CASE_TIMEOUT_S)
@pytest.mark.parametrize(("slug", "case_id"), PAIRS, ids=[f"{s}-{c}" for s, c in PAIRS])
def test_same_answer_as_azureml(slug: str, case_id: str, servers: Servers, reference_source: ReferenceSource) -> None:
    case = CASES[(slug, case_id)]
    state = servers.ours(slug)
    reference = state.reference[case_id]
    if state.our_error is not None:
        pytest.fail(f"our server did not start for {slug} ({state.deployment.script.name}): {state.our_error}", pytrace=False)
    assert state.our_url is not None
    ours = send(state.our_url, case)
    found = differences_between(slug, case, reference, ours)
    if found:
        pytest.fail(
            f"[reference: {reference_source.label}] {slug} / {case_id}: " + "; ".join(found)
            + f"\n  request:   {_request(case)}\n  reference: {_show(reference)}\n  ours:      {_show(ours)}",
            pytrace=False,
        )  # fmt: skip


@pytest.mark.timeout(CASE_TIMEOUT_S)
@pytest.mark.parametrize("slug", SLUGS)
def test_golden_file_matches_live_reference(slug: str, servers: Servers, reference_source: ReferenceSource) -> None:
    """The recorded answers are what azmlinfsrv answers today (else: re-record, and see why they moved)."""
    if not reference_source.live:
        pytest.skip("the reference is the golden files themselves: nothing live to check them against")
    path = golden_path(slug)
    assert path.exists(), f"no {path}: record it with `python -m tests.azureml.reference record --slug {slug}`"
    live = servers.slug(slug).reference
    recorded = {e["request"]["id"]: e for e in json.loads(path.read_text())["answers"]}
    moved = []
    for case in ALL_CASES[slug]:
        entry = recorded.get(case.id)
        if entry is None or entry["request"] != case.as_dict():
            moved.append(f"{case.id}: request not recorded as sent today")
            continue
        found = differences_between(slug, case, Answer.from_record(entry["answer"]), live[case.id])
        if found:
            moved.append(f"{case.id}: " + "; ".join(found))
    assert not moved, f"{path} differs from the live reference (re-record with " + (
        f"`python -m tests.azureml.reference record --slug {slug}`):\n  " + "\n  ".join(moved)
    )
