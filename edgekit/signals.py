"""Stopping on SIGTERM (the IoT Edge runtime's stop) and SIGINT (Ctrl-C), for asyncio programs."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[asyncio.Event]:
    """An event set when one of `signals` arrives, while the block runs; the handlers go with it.

    The event is set, never raised into the running code: the program decides what stopping
    means (finish the messages in hand, report, disconnect).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
