"""IoT Hub's limits on messages, and the one rule for a message's size.

IoT Hub refuses device-to-cloud messages over 256 KB and meters them in 4 KB blocks (0.5 KB on the
free tier). Both count the body plus every application property's name and value, in UTF-8 bytes:
the module's aggregate budget and the local edge's meter use this same function, so they cannot
disagree on non-ASCII properties.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

MESSAGE_LIMIT_BYTES = 256 * 1024
METERING_BLOCK_BYTES = 4 * 1024


def message_size(body: bytes, properties: Mapping[str, object] | None = None) -> int:
    """Bytes IoT Hub counts for a message: body + property names and values, UTF-8."""
    if not properties:
        return len(body)
    return len(body) + sum(len(k.encode()) + len(str(v).encode()) for k, v in properties.items())


def metered_blocks(size: int, block: int = METERING_BLOCK_BYTES) -> int:
    """How many metering blocks a message of `size` bytes costs (at least one)."""
    return max(1, math.ceil(size / block))
