"""Logging for every edge program: stderr, one line per record, quiet by default."""

from __future__ import annotations

import logging
import sys

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_LINE = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, line: str = DEFAULT_LINE) -> None:
    """stderr, one line per record; the SDK, which logs every connection step at INFO, stays at warnings unless DEBUG."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=line)
    set_log_level(level)


def set_log_level(level: str) -> None:
    """Change the level at run time (LOG_LEVEL, the twin's logLevel)."""
    level = level.upper()
    logging.getLogger().setLevel(level)
    logging.getLogger("azure.iot.device").setLevel(level if level == "DEBUG" else logging.WARNING)
