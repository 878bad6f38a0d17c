"""Model rollout in process: the bundle (round trip, hostile archives), the download against the local
edge's blob store (resume, faults, limits), the desired `model`'s validation, probation's arithmetic,
the model store, and URL redaction."""

from __future__ import annotations

import asyncio
import io
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from app.core.control import Controller, Health
from app.core.pipeline import Pipeline
from app.core.stats import Stats
from app.http.download import DownloadFailed, download
from app.model.bundle import BundleError, unpack_bundle, write_bundle
from app.model.modeldir import ModelDirError
from app.model.scorer import load_scorer
from app.model.store import ModelStore, Version
from app.rollout.agent import RolloutAgent
from app.rollout.probation import Probation
from app.settings import ConfigError, Settings, desired_model, settings_from_desired
from edgekit.redact import REDACTED, redact_url, scrub
from localedge.blobstore import BlobStore, Fault
from localedge.publish import publish
from tests.conftest import DEFAULT_MODEL_DIR, DEFAULT_MODEL_VERSION, ListSink

SHA = "ab" * 32


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    info = write_bundle(DEFAULT_MODEL_DIR, tmp_path_factory.mktemp("bundle") / "m.tar.gz")
    return info.path, info.sha256, info.size


@pytest.fixture
def blobs() -> object:
    with BlobStore() as store:
        yield store


# --- the bundle ----------------------------------------------------------------------------------------


def test_a_bundle_round_trips_into_a_verified_model_directory(bundle, tmp_path: Path) -> None:
    path, sha, size = bundle
    again = write_bundle(DEFAULT_MODEL_DIR, tmp_path / "again.tar.gz")
    assert (again.sha256, again.size) == (sha, size)  # reproducible: the same model, the same sha256
    manifest = unpack_bundle(path, tmp_path / "out", max_bytes=10**8)
    assert (manifest.name, manifest.version, manifest.verified) == ("temperature-anomaly", DEFAULT_MODEL_VERSION, True)
    assert (tmp_path / "out" / "model.pkl").read_bytes() == (DEFAULT_MODEL_DIR / "model.pkl").read_bytes()


def test_bundle_refuses_a_model_directory_whose_files_changed(model_copy: Path, tmp_path: Path) -> None:
    (model_copy / "model.pkl").write_bytes(b"changed")
    with pytest.raises(ModelDirError, match="sha256"):
        write_bundle(model_copy, tmp_path / "b.tar.gz")


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([(_member("../evil"), b"x")], "'..' part"),
        ([(_member("/etc/evil"), b"x")], "absolute"),
        ([(_member("a/../../evil"), b"x")], "'..' part"),
        ([(_member("link", tarfile.SYMTYPE, "/etc/passwd"), b"")], "a link"),
        ([(_member("hard", tarfile.LNKTYPE, "model.json"), b"")], "a link"),
        ([(_member("dev", tarfile.CHRTYPE), b"")], "a device or fifo"),
        ([(_member("fifo", tarfile.FIFOTYPE), b"")], "a device or fifo"),
        ([(_member("big"), b"x" * 2048)], "more than 1,024 bytes"),
        ([(_member("a"), b"1"), (_member("a"), b"2")], "appears twice"),
        ([(_member(f"f{i}"), b"") for i in range(6)], "more than 5 entries"),
        ([(_member("model.pkl"), b"x")], "no model.json"),
    ],
)
def test_unpacking_refuses_hostile_archives_and_leaves_nothing(tmp_path: Path, members, why: str) -> None:
    archive = _archive(tmp_path / "hostile.tar.gz", members)
    with pytest.raises(BundleError, match=why):
        unpack_bundle(archive, tmp_path / "out", max_bytes=1024, max_files=5)
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil").exists()


def test_unpacking_refuses_what_is_not_a_tar_gz(tmp_path: Path) -> None:
    (tmp_path / "x.tgz").write_bytes(b"not gzip at all")
    with pytest.raises(BundleError, match=r"not a readable tar\.gz"):
        unpack_bundle(tmp_path / "x.tgz", tmp_path / "out", max_bytes=1024)


def test_a_gzip_bomb_is_cut_off_at_the_bound(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "bomb.tar.gz", [(_member("zeros"), bytes(50 * 1024 * 1024))])
    assert archive.stat().st_size < 200_000
    with pytest.raises(BundleError, match="unpacks to more than"):
        unpack_bundle(archive, tmp_path / "out", max_bytes=10 * 1024 * 1024)


# --- the download ----------------------------------------------------------------------------------------


async def _fetch(url: str, part: Path, sha: str, size: int | None = None, **kw):
    progress: list[tuple[int, int | None]] = []
    options: dict[str, Any] = {"max_bytes": 10**8, "timeout_s": 10.0, "attempts": 3, "backoff": lambda n: 0.01} | kw
    await download(url, part, sha256=sha, size=size, on_progress=lambda d, o: progress.append((d, o)), **options)
    return progress


async def test_a_download_resumes_with_a_range_after_a_reset(blobs: BlobStore, bundle, tmp_path: Path) -> None:
    path, sha, size = bundle
    blobs.put("m.tgz", path)
    blobs.fault("m.tgz", Fault("reset", after=20_000, times=1))
    part = tmp_path / "dl" / f"{sha}.part"
    progress = await _fetch(blobs.sas_url("m.tgz"), part, sha, size)
    assert part.read_bytes() == path.read_bytes() and progress[-1] == (size, size)
    requests = blobs.requests_for("m.tgz")
    assert [(r.status, r.fault) for r in requests] == [(200, "reset"), (206, "")]
    resumed_at = int(requests[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 20_000  # what arrived before the reset was kept


async def test_a_download_resumes_a_part_file_left_by_an_earlier_run(blobs: BlobStore, bundle, tmp_path: Path) -> None:
    path, sha, size = bundle
    blobs.put("m.tgz", path)
    part = tmp_path / f"{sha}.part"
    part.write_bytes(path.read_bytes()[:30_000])
    await _fetch(blobs.sas_url("m.tgz"), part, sha, size)
    assert part.read_bytes() == path.read_bytes()
    assert [r.range for r in blobs.requests_for("m.tgz")] == ["bytes=30000-"]


async def test_a_truncated_download_is_retried_then_reported(blobs: BlobStore, bundle, tmp_path: Path) -> None:
    path, sha, size = bundle
    blobs.put("m.tgz", path)
    blobs.fault("m.tgz", Fault("truncate", after=1000))
    with pytest.raises(DownloadFailed, match=r"(truncated|stopped at).*after 3 of 3 tries") as failed:
        await _fetch(blobs.sas_url("m.tgz"), tmp_path / f"{sha}.part", sha, size)
    assert not failed.value.retryable
    assert len(blobs.requests_for("m.tgz")) == 3


async def test_a_wrong_hash_is_refused_and_the_part_file_removed(blobs: BlobStore, bundle, tmp_path: Path) -> None:
    path, sha, size = bundle
    blobs.put("m.tgz", path)
    blobs.fault("m.tgz", Fault("corrupt"))
    part = tmp_path / f"{sha}.part"
    with pytest.raises(DownloadFailed, match="sha256 mismatch"):
        await _fetch(blobs.sas_url("m.tgz"), part, sha, size)
    assert not part.exists() and len(blobs.requests_for("m.tgz")) == 1


async def test_an_expired_sas_fails_at_once_and_the_reason_has_no_token(blobs: BlobStore, bundle, tmp_path: Path) -> None:
    path, sha, size = bundle
    blobs.put("m.tgz", path)
    url = blobs.sas_url("m.tgz", expires_in=-60)
    with pytest.raises(DownloadFailed, match=r"HTTP 403.*AuthenticationFailed.*expired") as failed:
        await _fetch(url, tmp_path / f"{sha}.part", sha, size)
    assert len(blobs.requests_for("m.tgz")) == 1  # not retried
    assert url.split("?")[1] not in failed.value.reason and "sig=" not in failed.value.reason


async def test_a_slow_download_times_out(blobs: BlobStore, bundle, tmp_path: Path) -> None:
    path, sha, size = bundle
    blobs.put("m.tgz", path)
    blobs.fault("m.tgz", Fault("slow", rate=20_000))
    with pytest.raises(DownloadFailed, match="timed out"):
        await _fetch(blobs.sas_url("m.tgz"), tmp_path / f"{sha}.part", sha, size, timeout_s=0.5, attempts=1)


@pytest.mark.parametrize(("size", "max_bytes"), [(1000, 10**8), (None, 1000)])
async def test_a_blob_larger_than_declared_or_allowed_is_refused(blobs, bundle, tmp_path, size, max_bytes) -> None:
    path, sha, _ = bundle
    blobs.put("m.tgz", path)
    with pytest.raises(DownloadFailed, match="bytes"):
        await _fetch(blobs.sas_url("m.tgz"), tmp_path / f"{sha}.part", sha, size, max_bytes=max_bytes)
    assert len(blobs.requests_for("m.tgz")) == 1


@pytest.mark.parametrize(
    ("fault", "why"),
    [("expired", "HTTP 403"), ("corrupt", "sha256 mismatch"), ("truncated", "tries"), ("reset", "tries"), ("slow", "timed out")],
)
async def test_publish_serves_the_bundle_from_files_and_each_fault_from_a_blob_of_its_own(
    bundle, tmp_path: Path, fault: str, why: str
) -> None:
    path, sha, size = bundle
    with BlobStore(directory=tmp_path / "blobs") as store:
        bad = await asyncio.to_thread(publish, store, path, 600.0, fault, "inference")
        good = await asyncio.to_thread(publish, store, path, 600.0, None, "inference")
        assert bad["blob"] == f"{path.name}.{fault}" and good["blob"] == path.name
        assert (tmp_path / "blobs" / "models" / path.name).read_bytes() == path.read_bytes()  # a file of the run dir
        model = good["desired"]["model"]
        assert model == {
            "name": "temperature-anomaly",
            "version": DEFAULT_MODEL_VERSION,
            "url": good["url"],
            "sha256": sha,
            "size": size,
        }
        assert good["command"].startswith('python -m localedge desired inference \'{"model": ')
        with pytest.raises(DownloadFailed, match=why):
            await _fetch(bad["url"], tmp_path / "bad.part", sha, size, timeout_s=0.5, attempts=2)
        await _fetch(good["url"], tmp_path / "good.part", sha, size)  # the good blob met none of it
        assert (tmp_path / "good.part").read_bytes() == path.read_bytes()


# --- the desired `model`, the store, probation, redaction --------------------------------------------------


def test_the_desired_model_is_validated_with_the_document_and_never_quoted() -> None:
    base = Settings(model_dir=str(DEFAULT_MODEL_DIR))
    url = "https://acct.blob.core.windows.net/models/m.tgz?sv=1&sig=SECRETSIG"
    good = {"name": "m", "version": 2, "url": url, "sha256": SHA, "size": 10}
    settings_from_desired(base, {"model": good, "maxBatchSize": 8})
    spec = desired_model({"model": good})
    assert spec is not None and spec.url == url and "SECRETSIG" not in repr(spec) and "SECRETSIG" not in str(spec.shown())
    bad = {"name": "m", "version": -1, "url": url.replace("https", "http"), "sha256": "xyz", "extra": 1}
    with pytest.raises(ConfigError) as refused:
        settings_from_desired(base, {"model": bad})
    text = str(refused.value)
    for problem in ("model.extra: not a field", "model.version", "model.url: must be https", "model.sha256"):
        assert problem in text
    assert "SECRETSIG" not in text
    assert desired_model({"model": {**good, "url": "http://127.0.0.1:8080/m.tgz?sig=x"}}) is not None  # loopback
    with pytest.raises(ConfigError, match="MODEL_DOWNLOAD_MAX_BYTES"):
        settings_from_desired(base, {"model": {**good, "size": 10**12}})


def test_redaction_keeps_scheme_host_and_path_only() -> None:
    url = "https://user:pw@acct.blob.core.windows.net:443/models/m.tgz?sv=1&sig=S%2Bx#frag"
    assert redact_url(url) == "https://acct.blob.core.windows.net:443/models/m.tgz"
    assert redact_url("not a url") == REDACTED
    assert scrub(f"error at {url} and sv=1&sig=S%2Bx#frag", url).count("sig=") == 0


def _stats(predictions: int, faults: int, other_errors: int = 0) -> Stats:
    stats = Stats(predictions=predictions, errors=faults + other_errors)
    stats.errors_by_code = {"scoring_failed": faults, "not_json": other_errors}
    return stats


def test_probation_arithmetic() -> None:
    begin = Probation.begin(_stats(100, 1, 5), window_messages=100, window_s=60, max_rate=0.05, now=0.0)
    assert begin.verdict(_stats(150, 1, 5), now=1.0) is None  # 50 outcomes in, none failed
    assert begin.verdict(_stats(200, 6, 5), now=2.0) == "passed"  # 105 outcomes, 5 failed: 4.8%
    p = Probation.begin(_stats(0, 0), window_messages=100, window_s=60, max_rate=0.05, now=0.0)
    assert p.verdict(_stats(4, 6), now=1.0) == "failed"  # 6 > 5% of a whole window: no need to wait
    assert p.figures() | {"elapsedS": None} == {
        "messages": 10,
        "failures": 6,
        "failureRate": 0.6,
        "maxFailureRate": 0.05,
        "windowMessages": 100,
        "windowS": 60,
        "elapsedS": None,
    }
    timed = Probation.begin(_stats(0, 0), window_messages=100, window_s=60, max_rate=0.05, now=0.0)
    assert timed.verdict(_stats(18, 2), now=61.0) == "failed"  # 2 of 20 outcomes at the window's end
    assert timed.verdict(_stats(18, 2, 50), now=61.0) == "passed"  # 2 of 70: a not_json record is no model failure
    assert Probation.begin(_stats(0, 0), 100, 60, 0.05, 0.0).verdict(_stats(0, 0), now=61.0) == "passed"  # no traffic


def test_the_store_keeps_the_last_n_and_always_the_active_and_previous(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store", keep=2)
    store.prepare()
    entries = []
    for i in range(4):
        staged = store.staging_dir(f"{i:064d}")
        staged.mkdir(parents=True)
        entries.append(store.install(staged, "m", i, f"{i:064d}"))
    store.activate(entries[2])
    store.activate(entries[3])
    assert [v.version for v in store.state.versions] == [2, 3]
    assert sorted(p.name for p in store.versions_dir.iterdir()) == [e.dir for e in entries[2:]]
    again = ModelStore(tmp_path / "store", keep=2)  # survives a restart
    assert again.active == entries[3] and again.previous == entries[2]
    again.refuse(entries[3].sha256, "bad")
    again.forget_refusals(except_sha256=entries[3].sha256)
    assert ModelStore(tmp_path / "store", keep=2).state.refused == {entries[3].sha256: "bad"}


# --- probation across a restart ------------------------------------------------------------------------------


def _store_on_probation(root: Path, done: dict[str, Any]) -> tuple[ModelStore, Version, Version]:
    """A store whose version in use (`new`) was on probation, with `done` figures, when the module was killed."""
    store = ModelStore(root, keep=3)
    store.prepare()
    entries = []
    for i in (1, 2):
        staged = store.staging_dir(f"{i:064d}")
        shutil.copytree(DEFAULT_MODEL_DIR, staged, ignore=shutil.ignore_patterns(".register-*"))
        entries.append(store.install(staged, "temperature-anomaly", i, f"{i:064d}"))
    old, new = entries
    store.activate(old)
    record = {"previous": str(store.path_of(old)), "source": "http://127.0.0.1:1/models/m.tgz", **done}
    store.activate(new, probation=record)
    return store, old, new


async def _restarted_module(root: Path) -> tuple[RolloutAgent, Controller]:
    """The module after a restart: a new process's store, pipeline (counters at 0), controller and agent."""
    settings = Settings(
        model_dir=str(DEFAULT_MODEL_DIR), model_store=str(root), model_probation_messages=100, model_probation_s=300
    )
    agent = RolloutAgent(settings, download, (DownloadFailed,))
    started_on = agent.startup_dir()
    assert started_on is not None  # on the stored version in use, without a download
    settings = settings.replace(model_dir=started_on)
    pipeline = Pipeline(settings, load_scorer(started_on), ListSink())
    controller = Controller(settings, pipeline, Health(ready=True, status="ready"), model_override=started_on)
    agent.attach(controller)
    return agent, controller


@pytest.mark.timeout(30)
async def test_a_probation_interrupted_by_a_kill_is_resumed_and_can_still_roll_back(tmp_path: Path) -> None:
    store, old, new = _store_on_probation(tmp_path / "store", {"messages": 40, "failures": 4, "elapsedS": 10.0})
    assert ModelStore(tmp_path / "store", keep=3).state.probation["dir"] == new.dir  # written with the swap

    agent, controller = await _restarted_module(tmp_path / "store")
    assert controller.pipeline.settings.model_dir == str(store.path_of(new))
    assert controller.rollout is not None and controller.rollout["probation"]["state"] == "on"
    assert controller.rollout["probation"]["messages"] == 40  # the figures from before the kill
    stats = controller.pipeline.stats
    stats.predictions, stats.errors, stats.errors_by_code = 8, 2, {"scoring_failed": 2}  # 6 of 50: > 5 of a window
    assert agent._job is not None
    await asyncio.wait_for(agent._job, 10)

    rollout = controller.rollout
    assert rollout["state"] == "rolled-back" and (rollout["name"], rollout["version"]) == ("temperature-anomaly", 2)
    assert (rollout["probation"]["messages"], rollout["probation"]["failures"]) == (50, 6)
    assert controller.pipeline.settings.model_dir == str(store.path_of(old))
    after = ModelStore(tmp_path / "store", keep=3)
    assert after.active == old and after.state.probation is None and new.sha256 in after.state.refused


@pytest.mark.timeout(30)
async def test_a_resumed_probation_that_passes_keeps_the_new_version_and_ends_in_the_store(tmp_path: Path) -> None:
    store, _, new = _store_on_probation(tmp_path / "store", {"messages": 90, "failures": 1, "elapsedS": 100.0})
    agent, controller = await _restarted_module(tmp_path / "store")
    agent.want(desired_model({"model": {"name": new.name, "version": 2, "url": "http://127.0.0.1:1/m", "sha256": new.sha256}}))
    controller.pipeline.stats.predictions = 10  # the desired document (a twin GET) did not restart the probation
    assert agent._job is not None
    await asyncio.wait_for(agent._job, 10)

    assert controller.rollout is not None and controller.rollout["probation"]["state"] == "passed"
    assert (controller.rollout["probation"]["messages"], controller.rollout["probation"]["failures"]) == (100, 1)
    after = ModelStore(tmp_path / "store", keep=3)
    assert after.active == new and after.state.probation is None
    assert controller.pipeline.settings.model_dir == str(store.path_of(new))


def test_a_probation_of_a_version_no_longer_in_use_is_dropped(tmp_path: Path) -> None:
    store, old, _ = _store_on_probation(tmp_path / "store", {"messages": 1, "failures": 0, "elapsedS": 1.0})
    store.activate(old, rollback=True)  # e.g. a rollback recorded before the kill
    assert ModelStore(tmp_path / "store", keep=3).state.probation is None
