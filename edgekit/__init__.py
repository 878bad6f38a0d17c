"""What every edge program of this repository shares: the inference module (`app`), the sensor
stand-in (`sensor`), the local edge (`localedge`) and the manifest generator (`deploy`).

Nothing here imports those packages: they import edgekit, never the other way round.

- limits: IoT Hub's message limit, its 4 KB metering block and the one message-size rule
- logs: logging set-up and the run-time level change
- twin_patch: how a twin patch merges into a document (null removes)
- typed_settings: settings declared once (env name, twin name, type, bounds, help) and read from
  the environment or a JSON document, every problem named at once
- signals: an asyncio event set by SIGTERM/SIGINT
- handoff: the hand-over from the SDK's threads to our event loop, wake-ups coalesced
- mqtt_socket: hooks on the SDK's paho client: TCP_NODELAY, and a tap that sees each message before it is acknowledged
- routes: edgeHub's route language (parse, WHERE conditions, destinations)
"""
