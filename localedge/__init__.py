"""A local edge: the deployment running on one machine with no Docker and no Azure.

A developer tool, kept apart from the module's runtime code (`app/`). Mosquitto brokers stand in
for edgeHub (one per module), modules run as child processes on their real azure-iot-device
clients, and this package does what edgeHub would: routes, `$upstream`, twins and direct methods.
"""
