"""The SAS token lifetime of azure-iot-device 2.x's module client, and a renewal margin that fits it.

The SDK signs a token valid for `sastoken_ttl` seconds (default 3600) and renews it DEFAULT_TOKEN_UPDATE_MARGIN
(120 s, a class constant of its SasTokenStage) before expiry, reconnecting with the new one. A TTL at or under that
margin would schedule each renewal in the past: renewal and reconnect back to back, forever. So a short TTL (as the
local edge's `--token-ttl 60` sets, to run the renewal path in tests) gets a margin of a quarter of it; the
constant is process-wide, and a module process has one client.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

SDK_DEFAULT_TTL_S = 3600
SDK_RENEWAL_MARGIN_S = 120  # azure-iot-device 2.14: SasTokenStage.DEFAULT_TOKEN_UPDATE_MARGIN


def renewal_margin(ttl_s: int) -> int:
    """Seconds before expiry the token is renewed: the SDK's 120, or a quarter of a TTL too short for it."""
    return min(SDK_RENEWAL_MARGIN_S, max(1, ttl_s // 4))


def client_options(ttl_s: int) -> dict[str, Any]:
    """Keyword arguments for create_from_edge_environment(); adjusts the SDK's renewal margin for a short TTL."""
    if ttl_s == SDK_DEFAULT_TTL_S:
        return {}
    margin = renewal_margin(ttl_s)
    if margin != SDK_RENEWAL_MARGIN_S:
        from azure.iot.device.common.pipeline.pipeline_stages_base import SasTokenStage

        SasTokenStage.DEFAULT_TOKEN_UPDATE_MARGIN = margin
    log.info("SAS tokens live %d s, renewed %d s before expiry", ttl_s, margin)
    return {"sastoken_ttl": ttl_s}
