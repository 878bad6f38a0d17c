"""`python -m app serve`: the HTTP endpoint alone, no edgeHub needed."""

from __future__ import annotations

import logging

from app.core.control import Health
from app.core.sinks import RepliesOnly
from app.http.server import start_http
from app.main import open_pipeline
from app.settings import Settings
from edgekit.signals import stop_on_signals

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> int:
    """Serve POST /score, health and metrics until SIGTERM/SIGINT; returns the exit code."""
    with stop_on_signals() as stop:
        health = Health()
        pipeline = await open_pipeline(settings, RepliesOnly())
        runner = await start_http(pipeline, health)
        health.ready, health.status = True, "ready"
        log.info("serving http://%s:%d (POST /score, GET /ready, GET /metrics)", settings.http_host, settings.http_port)
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
