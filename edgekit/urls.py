"""URLs as they may be shown: a blob's SAS URL carries its token in the query, which no log, message, report or
error record may hold."""

from __future__ import annotations

from urllib.parse import urlsplit


def shown_url(url: str) -> str:
    """`scheme://host/path`, with `?…` in place of a query and no user info: enough to tell which blob, nothing
    that grants access to it."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced [ in the host: say nothing of it
        return "<not a URL>"
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    hidden = "?…" if parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{parts.path}{hidden}" if parts.scheme else f"{parts.path}{hidden}"
