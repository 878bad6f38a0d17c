"""A driver module (as some Azure SDKs generate) in front of the real score script: its init() runs, the
score script's run() is called directly."""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location("driver_target", os.path.join(os.path.dirname(__file__), "standard_schema.py"))
driver_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(driver_module)

calls = []


def init():
    calls.append("driver init")
    driver_module.init()


def run(raw):
    raise AssertionError("the driver's run() is never called")
