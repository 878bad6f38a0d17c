"""URLs that carry credentials (a blob SAS token in the query), shown without them.

A SAS URL is a bearer credential: whoever reads it can download the blob until it expires. Logs,
reported properties, metrics and error records show `scheme://host/path` only, and any text that
could quote a URL (an exception from an HTTP library) goes through `scrub` first.
"""

from __future__ import annotations

from urllib.parse import urlsplit

REDACTED = "[redacted]"


def redact_url(url: str) -> str:
    """`scheme://host[:port]/path`: no user info, query or fragment. Unparseable text shows as REDACTED."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED
    if ":" in host:  # an IPv6 literal goes back into brackets
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def scrub(text: str, url: str) -> str:
    """`text` with `url`, and its query on its own, replaced by the redacted form (and REDACTED)."""
    if url:
        text = text.replace(url, redact_url(url))
        query = urlsplit(url).query if "?" in url else ""
        if query:
            text = text.replace(query, REDACTED)
    return text
