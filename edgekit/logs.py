"""Logging for every edge program: stderr, one line per record, quiet by default, in IoT Edge's format.

IoT Edge's own modules write `<6> 2026-11-30 12:00:00.000 +00:00 [INF] - message`: the syslog severity
first, then the time with its UTC offset. `az iot hub invoke-module-method ... GetModuleLogs` (and the
portal's troubleshooting page, `iotedge logs` exports, the Log Analytics upload) filter a module's log
by that leading `<severity>`; a line without it cannot be filtered by level. So every line starts so.
"""

from __future__ import annotations

import logging
import sys
import time

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Python level -> (syslog severity, IoT Edge's three-letter level)
_SYSLOG = {
    logging.DEBUG: (7, "DBG"),
    logging.INFO: (6, "INF"),
    logging.WARNING: (4, "WRN"),
    logging.ERROR: (3, "ERR"),
    logging.CRITICAL: (2, "CRT"),
}


class IoTEdgeFormatter(logging.Formatter):
    """`<severity> yyyy-mm-dd hh:mm:ss.fff +00:00 [LVL] logger: message`, in UTC."""

    converter = staticmethod(time.gmtime)  # UTC, as the "+00:00" says

    def __init__(self) -> None:
        super().__init__("<%(syslog)d> %(asctime)s.%(msecs)03d +00:00 [%(short)s] %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        level = max((lvl for lvl in _SYSLOG if lvl <= record.levelno), default=logging.DEBUG)
        record.syslog, record.short = _SYSLOG[level]
        return super().format(record)


def configure_logging(level: str) -> None:
    """stderr, one line per record; the SDK, which logs every connection step at INFO, stays at warnings unless DEBUG."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(IoTEdgeFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
    set_log_level(level)


def set_log_level(level: str) -> None:
    """Change the level at run time (LOG_LEVEL, the twin's logLevel)."""
    level = level.upper()
    logging.getLogger().setLevel(level)
    logging.getLogger("azure.iot.device").setLevel(level if level == "DEBUG" else logging.WARNING)
