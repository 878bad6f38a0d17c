"""images/lock.py without the network: the lock format, the offline staleness check `make image` relies on, and the
closure walked with the target platform's markers (pip evaluates them as on the machine that locks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.settings import REPO_ROOT
from tests.helpers import load_images_script

lock = load_images_script("lock")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of requirements/ (locks included) and the Dockerfiles that the lock module reads instead of the repo's."""
    shutil.copytree(REPO_ROOT / "requirements", tmp_path / "requirements")
    for name in ("Dockerfile", "Dockerfile.arm64v8", "Dockerfile.arm32v7"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    monkeypatch.setattr(lock, "ROOT", tmp_path)
    monkeypatch.setattr(lock, "REQUIREMENTS", tmp_path / "requirements")
    monkeypatch.setattr(lock, "LOCK_DIR", tmp_path / "requirements" / "lock")
    return tmp_path


def test_the_repos_locks_are_current(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lock.check() == lock.OK
    assert "7 lock files up to date" in capsys.readouterr().out


def test_a_comment_does_not_make_a_lock_stale(repo: Path) -> None:
    runtime = repo / "requirements" / "runtime.txt"
    runtime.write_text("# a new comment\n" + runtime.read_text().replace("\n", "  # and another\n", 1))
    assert lock.check() == lock.OK


@pytest.mark.parametrize(
    ("path", "stale"),
    [
        ("runtime.txt", ["runtime-amd64.txt", "runtime-arm64v8.txt", "runtime-arm32v7.txt"]),
        ("model.txt", ["runtime-amd64.txt", "runtime-arm64v8.txt", "runtime-arm32v7.txt"]),
        ("script.txt", ["script-amd64.txt", "script-arm64v8.txt", "script-arm32v7.txt"]),
    ],
)
def test_a_changed_requirement_makes_its_locks_stale(
    repo: Path, capsys: pytest.CaptureFixture[str], path: str, stale: list[str]
) -> None:
    file = repo / "requirements" / path
    if path == "model.txt":
        file.write_text(file.read_text().replace("joblib==1.4.2", "joblib==1.5.0"))
    else:
        file.write_text(file.read_text() + "\nrequests-toolbelt==1.0.0\n")
    assert lock.check() == lock.FAILED
    out = capsys.readouterr().out
    for name in stale:
        assert f"stale: requirements/lock/{name}" in out, out
    assert "run `make lock`" in out
    if path == "script.txt":
        assert "runtime-amd64.txt" not in out  # the runtime layer's lock, and so its cache, is kept


def test_a_missing_lock_is_stale(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "requirements" / "lock" / "script-arm64v8.txt").unlink()
    assert lock.check() == lock.FAILED
    assert "script-arm64v8.txt: missing" in capsys.readouterr().out


def test_render_and_entries_of_round_trip() -> None:
    pins = [
        lock.Pin("paho-mqtt", "1.6.1", "paho-mqtt-1.6.1.tar.gz", "a" * 64, "", "azure-iot-device"),
        lock.Pin("orjson", "3.11.5", "orjson-3.11.5-cp313-cp313-manylinux_2_17_aarch64.whl", "b" * 64, "", ""),
    ]
    text = lock.render("title", "linux/arm64", "c" * 64, pins, ["a note"])
    assert lock.entries_of(text) == [
        ("paho-mqtt", "1.6.1", "paho-mqtt-1.6.1.tar.gz"),
        ("orjson", "3.11.5", "orjson-3.11.5-cp313-cp313-manylinux_2_17_aarch64.whl"),
    ]
    assert lock.header_digest(text) == "c" * 64
    assert "paho-mqtt==1.6.1 \\\n    --hash=sha256:" + "a" * 64 in text


def _item(name: str, requires: list[str], requested: bool = False) -> dict:
    return {
        "metadata": {"name": name, "version": "1.0", "requires_dist": requires},
        "download_info": {"url": f"https://files.example/{name}-1.0-py3-none-any.whl", "archive_info": {"hashes": {}}},
        "requested": requested,
    }


def test_closure_follows_the_targets_markers_not_this_machines() -> None:
    items = [
        _item("app", ['only-x86 ; platform_machine == "x86_64"', "everywhere", 'old ; python_version < "3.8"'], True),
        _item("only-x86", []),
        _item("everywhere", []),
    ]
    amd64 = lock.closure(lock.PLATFORMS["amd64"], items, {}, {}, "runtime")
    assert [p.name for p in amd64] == ["app", "everywhere", "only-x86"]
    arm = lock.closure(lock.PLATFORMS["arm64v8"], items, {}, {}, "runtime")
    assert [p.name for p in arm] == ["app", "everywhere"]  # what only this machine needs is dropped

    needs_aarch64 = [_item("app", ['only-arm ; platform_machine == "aarch64"'], True)]
    with pytest.raises(lock.LockError, match="linux/arm64 needs only-arm"):
        lock.closure(lock.PLATFORMS["arm64v8"], needs_aarch64, {}, {}, "runtime")


def test_closure_leaves_out_what_the_image_already_has() -> None:
    items = [_item("pandas", ["numpy>=1.21", "python-dateutil"], True), _item("python-dateutil", [])]
    pins = lock.closure(lock.PLATFORMS["arm32v7"], items, {"numpy": "2.2.4"}, {}, "script")
    assert [(p.name, p.needed_by) for p in pins] == [("pandas", ""), ("python-dateutil", "pandas")]


@pytest.mark.parametrize("platform", ["amd64", "arm64v8", "arm32v7"])
def test_every_lock_leaves_out_debians_packages_and_names_them(repo: Path, platform: str) -> None:
    provided = lock.debian_provided(lock.PLATFORMS[platform])
    assert provided == {
        "joblib": "1.4.2",
        "numpy": "2.2.4",
        "onnxruntime": "1.21.0",
        "scikit-learn": "1.4.2",
        "scipy": "1.15.3",
        "threadpoolctl": "3.1.0",
    }
    header = (repo / "requirements" / "lock" / f"runtime-{platform}.txt").read_text().split("\n\n")[0]
    dockerfile = lock.PLATFORMS[platform].dockerfile
    assert f"Left out, from Debian's packages in {dockerfile}: joblib 1.4.2, numpy 2.2.4, onnxruntime 1.21.0" in header


def test_pip_runs_without_this_machines_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///opt/pypi/simple")
    monkeypatch.setenv("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
    env = lock.pip_env()
    assert "PIP_FIND_LINKS" not in env and "PIP_EXTRA_INDEX_URL" not in env
    assert env["PIP_CONFIG_FILE"] == "/dev/null" and env["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"


def test_platform_tags_prefer_the_newest_manylinux_as_pip_on_trixie_does() -> None:
    tags = lock.PLATFORMS["arm64v8"].tags
    assert tags[0] == "manylinux_2_41_aarch64" and tags[-1] == "linux_aarch64"
    assert "manylinux2014_aarch64" in tags and "manylinux_2_17_aarch64" in tags
    assert lock.PLATFORMS["arm32v7"].markers()["platform_machine"] == "armv7l"
    assert lock.PLATFORMS["arm32v7"].markers()["python_version"] == "3.13"  # Debian trixie's Python
