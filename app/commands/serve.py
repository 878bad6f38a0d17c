"""`python -m app serve`: the HTTP endpoint alone, no edgeHub needed.

It listens on 127.0.0.1 unless told otherwise (`--host`, or HTTP_HOST in the environment): a
laptop's scoring endpoint should not be on the LAN by surprise. The module (`python -m app`) keeps
HTTP_HOST's default 0.0.0.0: edgeHub's other modules reach it over the edge network by module name.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping

from app.core.control import Health
from app.core.sinks import RepliesOnly
from app.http.auth import load_token
from app.http.server import start_http
from app.main import open_pipeline
from app.settings import Settings
from edgekit.signals import stop_on_signals

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def serve_host(host: str | None, settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """serve's address: --host, else HTTP_HOST if the environment sets it, else loopback."""
    if host is not None:
        return host
    environ = os.environ if environ is None else environ
    return settings.http_host if environ.get("HTTP_HOST") else LOOPBACK


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(settings: Settings) -> int:
    """Serve POST /score, health and metrics until SIGTERM/SIGINT; returns the exit code."""
    token = load_token(settings)  # a bad HTTP_TOKEN_FILE stops here, before the model loads
    with stop_on_signals() as stop:
        health = Health()
        pipeline = await open_pipeline(settings, RepliesOnly())
        try:
            runner = await start_http(pipeline, health, token=token)
        except BaseException:
            await pipeline.close()
            raise
        health.ready, health.status = True, "ready"
        log.info(
            "serving http://%s:%d (POST /score, GET /ready, GET /metrics); %s",
            settings.http_host,
            settings.http_port,
            "bearer token required but for GET /live" if token else "no token (HTTP_TOKEN, HTTP_TOKEN_FILE)",
        )
        if not token and not _is_loopback(settings.http_host):
            log.warning("listening on %s without a token: anyone who reaches it may score and read metrics", settings.http_host)
        await stop.wait()
        health.ready, health.status = False, "stopping"
        await runner.cleanup()  # stops listening, lets requests in flight finish
        await pipeline.close()
    return 0


def health_probe(settings: Settings) -> int:
    """`python -m app health`: probe GET /live on this container's own endpoint; with HTTP off, nothing to ask."""
    if settings.http_port == 0:
        return 0
    import sys
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.http_port}/live", timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
