"""Where the public Azure ML scoring scripts of the compatibility tests live, and how they get there.

Public code stays out of this repository: only their provenance is kept here (tests/azureml/sources/<slug>.md:
repository, commit, path and git blob hash of each file). The files themselves are installed, unchanged, into
the corpus directory (`$AZUREML_CORPUS`, default ~/.cache/edge-inference/azureml-corpus/<slug>/) from local git
copies of those repositories (`fetch` snapshots: <mirrors>/<owner>+<name>/repo):

    python -m tests.azureml.corpus install --mirrors /work/.mirror
    python -m tests.azureml.corpus check

Every file is checked against its recorded blob hash, at install and before a test uses it. A machine without
the corpus skips the tests that need it, saying why and how to install it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "sources"
_REPOSITORY = re.compile(r"^\| Repository \| https://github\.com/([^/\s]+/[^/\s|]+) \|", re.M)
_COMMIT = re.compile(r"^\| Commit \| `([0-9a-f]{40})` \|", re.M)
_FILE = re.compile(r"^\| `([^`]+)` \| `([^`]+)` \| `([0-9a-f]{40})` \|", re.M)


@dataclass(frozen=True)
class Source:
    """One file of a corpus entry: its name in the entry's folder, where it was published, its git blob hash."""

    name: str
    repository: str  # owner/name on GitHub
    commit: str
    path: str
    blob: str


def root() -> Path:
    return Path(os.environ.get("AZUREML_CORPUS") or Path.home() / ".cache" / "edge-inference" / "azureml-corpus")


def slugs() -> list[str]:
    return sorted(p.stem for p in SOURCES.glob("*.md") if p.stem != "README")


def sources(slug: str) -> list[Source]:
    text = (SOURCES / f"{slug}.md").read_text(encoding="utf-8")
    repository, commit = _REPOSITORY.search(text), _COMMIT.search(text)
    if repository is None or commit is None:
        raise ValueError(f"{SOURCES / slug}.md names no repository or commit")
    return [Source(name, repository.group(1), commit.group(1), path, blob) for name, path, blob in _FILE.findall(text)]


def blob_hash(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def problems(slug: str) -> list[str]:
    """What is missing or changed in `slug`'s installed files (empty: complete and as published)."""
    directory = root() / slug
    found = []
    for source in sources(slug):
        path = directory / source.name
        if not path.is_file():
            found.append(f"{path} is missing")
        elif blob_hash(path.read_bytes()) != source.blob:
            found.append(f"{path} differs from {source.repository}@{source.commit[:12]}:{source.path}")
    return found


def directory(slug: str) -> Path:
    """`slug`'s installed folder; skips the calling test (with the reason and the fix) when it is not there whole."""
    found = problems(slug)
    if found:
        import pytest

        pytest.skip(
            f"the public Azure ML corpus is not installed here ({found[0]}); public code is not kept in this "
            "repository: python -m tests.azureml.corpus install --mirrors DIR (see tests/azureml/corpus.py)"
        )
    return root() / slug


def install(mirrors: Path) -> list[str]:
    """Copy every listed file out of local git copies of its repository; returns what could not be installed."""
    failed = []
    for slug in slugs():
        target = root() / slug
        target.mkdir(parents=True, exist_ok=True)
        for source in sources(slug):
            git_dir = mirrors / source.repository.replace("/", "+") / "repo"
            run = subprocess.run(
                ["git", f"--git-dir={git_dir}", "show", f"{source.commit}:{source.path}"], capture_output=True, timeout=60
            )
            if run.returncode != 0:
                failed.append(f"{slug}/{source.name}: {run.stderr.decode(errors='replace').strip()[:200]}")
                continue
            if blob_hash(run.stdout) != source.blob:
                failed.append(f"{slug}/{source.name}: blob {blob_hash(run.stdout)}, expected {source.blob}")
                continue
            (target / source.name).write_bytes(run.stdout)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.azureml.corpus", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    install_parser = sub.add_parser("install", help="copy the files from local git copies of their repositories")
    install_parser.add_argument("--mirrors", type=Path, required=True, help="folder of <owner>+<name>/repo git directories")
    sub.add_parser("check", help="say what is missing or changed")
    args = parser.parse_args(argv)
    if args.command == "install":
        failed = install(args.mirrors)
        for line in failed:
            print(f"not installed: {line}", file=sys.stderr)
        print(f"corpus in {root()}: {len(slugs())} entries, {len(failed)} files not installed")
        return 1 if failed else 0
    found = [line for slug in slugs() for line in problems(slug)]
    for line in found:
        print(line)
    print(f"corpus in {root()}: {'complete' if not found else f'{len(found)} problems'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
