"""A stand-in for Microsoft's SimulatedTemperatureSensor for the local edge: `python -m sensor`.

Same output (`temperatureOutput`), body, properties and settings as Microsoft's module
(edge-modules/SimulatedTemperatureSensor in Azure/iotedge), on azure-iot-device, so the local edge
runs without Docker. It imports nothing of the inference module; what it shares with it comes from `edgekit`.
"""
