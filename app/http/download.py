"""Downloading a model bundle into a part file of the model store: resumable, bounded, retried.

Each attempt asks for what the part file lacks (`Range: bytes=N-`) and appends; a server that answers
200 instead of 206 sends the whole blob again, and the part file starts over. An attempt is bounded in
time (MODEL_DOWNLOAD_TIMEOUT_S, and a read that stalls for a minute), the blob in size (the declared
`size` and MODEL_DOWNLOAD_MAX_BYTES); failures that another try may cure (a reset, a cut, a timeout,
5xx, 408, 429) are retried after a jittered exponential back-off, the others (403: an expired or
wrong SAS, 404, a size or sha256 that does not match) fail at once. The sha256 is checked over the
whole part file before anything is unpacked.

The URL carries a SAS token: no reason, log line or exception text leaves here with it (`scrub`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable
from pathlib import Path

import aiohttp

from edgekit.redact import redact_url, scrub

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
STALL_S = 60.0
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


class DownloadFailed(RuntimeError):
    """The bundle could not be downloaded; `reason` is for people (no credentials), `retryable` for the loop."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def backoff_s(attempt: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Full jitter: a fleet that failed together does not retry together."""
    return random.uniform(0, min(cap, base * 2**attempt))


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _append(path: Path, data: bytes, truncate: bool) -> None:
    with open(path, "wb" if truncate else "ab") as f:
        f.write(data)


async def download(
    url: str,
    part: Path,
    *,
    sha256: str,
    size: int | None,
    max_bytes: int,
    timeout_s: float,
    attempts: int,
    on_progress: Callable[[int, int | None], None] = lambda done, of: None,
    backoff: Callable[[int], float] = backoff_s,
) -> Path:
    """Fetch `url` into `part` (resuming what is there) until its sha256 is `sha256`; DownloadFailed otherwise."""
    part.parent.mkdir(parents=True, exist_ok=True)
    limit = min(size, max_bytes) if size is not None else max_bytes
    last: DownloadFailed | None = None
    for attempt in range(attempts):
        if attempt:
            delay = backoff(attempt - 1)
            log.info("download of %s: try %d of %d in %.1f s (%s)", redact_url(url), attempt + 1, attempts, delay, last)
            await asyncio.sleep(delay)
        try:
            await _attempt(url, part, size, limit, timeout_s, on_progress)
        except DownloadFailed as exc:
            last = exc
            if not exc.retryable:
                break
            continue
        have = await asyncio.to_thread(_sha256, part)
        if have != sha256:
            part.unlink(missing_ok=True)
            raise DownloadFailed(f"sha256 mismatch: the download has {have[:12]}…, the desired model says {sha256[:12]}…", False)
        return part
    assert last is not None
    raise DownloadFailed(f"{last.reason} (after {attempt + 1} of {attempts} tries)", False) from None


async def _attempt(
    url: str, part: Path, size: int | None, limit: int, timeout_s: float, on_progress: Callable[[int, int | None], None]
) -> None:
    have = part.stat().st_size if part.exists() else 0
    if have > limit:
        have = 0
    if size is not None and have == size:
        return  # complete from an earlier run: the sha256 decides
    headers = {"Range": f"bytes={have}-"} if have else {}
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(30.0, timeout_s), sock_read=min(STALL_S, timeout_s))
    done = have
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, raise_for_status=False) as session,
            session.get(url, headers=headers, allow_redirects=True, max_redirects=3) as response,
        ):
            status = response.status
            if status == 416 and have:  # asked past the end: the part file is no good
                part.unlink(missing_ok=True)
                raise DownloadFailed("the server refused to resume (416); starting over", True)
            if status not in (200, 206):
                code = response.headers.get("x-ms-error-code", "")
                why = f"HTTP {status} {response.reason or ''}".strip() + (f" ({code})" if code else "")
                if status == 403:
                    why += ": the URL's SAS token has expired or does not grant read; give the desired model a new URL"
                raise DownloadFailed(why, status in RETRYABLE_STATUS)
            start = _start_of(response, status, have)
            total = _total_of(response, start)
            if total is not None and (total > limit or (size is not None and total != size)):
                raise DownloadFailed(
                    f"the blob is {total:,} bytes; the desired model says {size if size is not None else 'no size'} and "
                    f"MODEL_DOWNLOAD_MAX_BYTES is {limit:,}",
                    False,
                )
            done, truncate = start, start == 0
            if truncate:  # a whole blob (the first try, or a server that does not resume): the part file starts over
                await asyncio.to_thread(_append, part, b"", True)
            async for chunk in response.content.iter_chunked(CHUNK):
                if done + len(chunk) > limit:
                    raise DownloadFailed(
                        f"the blob is larger than {limit:,} bytes (the declared size or MODEL_DOWNLOAD_MAX_BYTES)", False
                    )
                await asyncio.to_thread(_append, part, chunk, False)  # each chunk on disk: a kill loses none of it
                done += len(chunk)
                on_progress(done, total)
            if total is not None and done < total:
                raise DownloadFailed(f"the download stopped at {done:,} of {total:,} bytes", True)
    except DownloadFailed:
        raise
    except TimeoutError:
        raise DownloadFailed(f"timed out (MODEL_DOWNLOAD_TIMEOUT_S={timeout_s:g}) at {_bytes(part)} bytes", True) from None
    except aiohttp.ClientPayloadError:
        raise DownloadFailed(f"the connection was cut at {_bytes(part):,} bytes (truncated)", True) from None
    except (aiohttp.ClientError, OSError) as exc:
        why = scrub(str(exc), url)[:300] or type(exc).__name__
        raise DownloadFailed(f"{type(exc).__name__} at {_bytes(part):,} bytes: {why}", True) from None


def _bytes(part: Path) -> int:
    try:
        return part.stat().st_size
    except OSError:
        return 0


def _start_of(response: aiohttp.ClientResponse, status: int, have: int) -> int:
    """Where the body starts in the blob: 0 for a 200; for a 206, the Content-Range start, which must be `have`."""
    if status == 200:
        return 0
    content_range = response.headers.get("Content-Range", "")
    try:
        first = int(content_range.split(" ", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        raise DownloadFailed(f"a 206 answer without a usable Content-Range ({content_range[:60]!r})", True) from None
    if first != have:
        raise DownloadFailed(f"the server resumed at byte {first}, not {have}", True)
    return first


def _total_of(response: aiohttp.ClientResponse, start: int) -> int | None:
    """The blob's whole size, from Content-Range (206) or Content-Length (200), when the server says it."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range:
        tail = content_range.rsplit("/", 1)[1]
        return int(tail) if tail.isdigit() else None
    length = response.content_length
    return start + length if length is not None else None
