"""The desired property `model`: which model bundle the module should run, and where to fetch it.

`{"name", "version", "url", "sha256", "size"?}`, validated as a whole with the rest of the desired
document (an invalid one changes nothing). The URL carries a SAS token: it is never part of a
refusal's text, a repr or anything reported; `shown()` is what may be.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from edgekit.redact import redact_url

KEY = "model"  # the desired property
_FIELDS = ("name", "version", "url", "sha256", "size")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
URL_MAX_CHARS = 8192
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: int
    url: str = field(repr=False)  # a credential: never in a repr
    sha256: str
    size: int | None = None

    def shown(self) -> dict[str, Any]:
        """What may be logged or reported: the URL without its query."""
        return {"name": self.name, "version": self.version, "url": redact_url(self.url), "sha256": self.sha256, "size": self.size}

    def same_bundle(self, other: ModelSpec | None) -> bool:
        return other is not None and (self.name, self.version, self.sha256) == (other.name, other.version, other.sha256)


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why the module will not download from `url` (never quoting its query), or None."""
    if len(url) > URL_MAX_CHARS:
        return f"is longer than {URL_MAX_CHARS} characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        return "is not a URL"
    if not host:
        return "has no host"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _loopback(host):
        return None  # tests and the local edge's blob store
    return f"must be https (http only to a loopback host), not {parts.scheme or 'no scheme'}://"


def spec_problems(value: Any, max_bytes: int | None = None) -> tuple[ModelSpec | None, list[str]]:
    """The spec, or None and every problem (each naming `model.<field>`); None with none for a null (removed)."""
    if value is None:
        return None, []
    if not isinstance(value, dict):
        return None, [f"{KEY}: expected an object {{name, version, url, sha256, size?}}"]
    problems = [f"{KEY}.{key}: not a field (fields: {', '.join(_FIELDS)})" for key in value if key not in _FIELDS][:3]
    problems += [f"{KEY}.{key}: missing" for key in _FIELDS[:4] if key not in value]
    name, version, url, sha, size = (value.get(k) for k in _FIELDS)
    if "name" in value and not (isinstance(name, str) and _NAME.fullmatch(name)):
        problems.append(f"{KEY}.name: expected 1-256 of A-Z a-z 0-9 _ . -")
    if "version" in value and (isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 10**9):
        problems.append(f"{KEY}.version: expected a whole number 0 or more")
    if "url" in value:
        why = url_problem(url) if isinstance(url, str) else "expected a string"
        if why:
            problems.append(f"{KEY}.url: {why}")
    if "sha256" in value and not (isinstance(sha, str) and _HEX64.fullmatch(sha)):
        problems.append(f"{KEY}.sha256: expected 64 lower-case hex digits (what `python -m app bundle` prints)")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            problems.append(f"{KEY}.size: expected a whole number of bytes, 1 or more")
        elif max_bytes is not None and size > max_bytes:
            problems.append(f"{KEY}.size: {size} bytes is more than MODEL_DOWNLOAD_MAX_BYTES ({max_bytes})")
    if problems:
        return None, problems
    assert isinstance(version, int)  # checked above
    return ModelSpec(str(name), version, str(url), str(sha), size), []
