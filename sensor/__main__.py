"""`python -m sensor`: the SimulatedTemperatureSensor stand-in (see sensor/__init__.py).

Exit codes: 0 after SIGTERM/SIGINT, 1 when edgeHub cannot be reached (the runtime restarts the
module), 2 for invalid settings.
"""

from __future__ import annotations

import asyncio
import os
import sys

from edgekit.logs import configure_logging
from sensor.module import run_sensor
from sensor.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"sensor: {exc}", file=sys.stderr)
        return 2
    # "sensor ready: ...", "sensor done: sent=N": the logger's name leads each of our lines.
    configure_logging(settings.log_level)
    return asyncio.run(run_sensor(settings))


if __name__ == "__main__":
    sys.exit(main())
