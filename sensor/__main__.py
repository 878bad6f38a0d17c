"""`python -m sensor`: the SimulatedTemperatureSensor stand-in (see sensor/__init__.py).

Exit codes: 0 after SIGTERM/SIGINT, 1 when edgeHub cannot be reached (the runtime restarts the
module), 2 for invalid settings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from sensor.module import run_sensor
from sensor.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"sensor: {exc}", file=sys.stderr)
        return 2
    # "sensor ready: ...", "sensor done: sent=N": the logger's name leads each of our lines.
    logging.basicConfig(level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if settings.log_level != "DEBUG":
        logging.getLogger("azure.iot.device").setLevel(logging.WARNING)  # it logs every connection step at INFO
    return asyncio.run(run_sensor(settings))


if __name__ == "__main__":
    sys.exit(main())
