# linux/amd64 image of the edge inference module.
# Debian bookworm, like the arm32v7 image, so both run Python 3.11 with the same pinned model stack
# (requirements/model.txt): the same model.pkl loads and predicts the same on both.
FROM debian:bookworm-slim AS build
# python3 itself follows bookworm's security updates; the model stack is pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY requirements/model.txt requirements/runtime.txt /tmp/requirements/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements/runtime.txt
# The scoring script's own packages (requirements/script.txt, see `python -m app script-deps`), in a step of their
# own so that changing them keeps the layer above. Resolved together with the runtime's pins and with the model
# stack as constraints: a script's requirements can never replace the pinned stack (pip fails instead).
COPY requirements/script.txt /tmp/requirements/
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
      -c /tmp/requirements/model.txt -r /tmp/requirements/runtime.txt -r /tmp/requirements/script.txt \
 && /opt/venv/bin/pip uninstall -y --disable-pip-version-check pip setuptools \
 && find /opt/venv -name __pycache__ -type d -prune -exec rm -rf {} +

FROM debian:bookworm-slim
ARG VERSION=0.0.0
ARG MODEL=unknown
LABEL org.opencontainers.image.title="edge-inference-module" \
      org.opencontainers.image.version="${VERSION}" \
      io.edge-inference.model="${MODEL}"
# python3 itself follows bookworm's security updates; the model stack is pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin module \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/edge-inference/journal
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY app/ /app/app/
# What the module shares with the repo's other edge programs (see edgekit/__init__.py).
COPY edgekit/ /app/edgekit/
# The default model; mount another model directory over /app/model (or set MODEL_DIR) to replace it.
COPY model/model.pkl model/model.json /app/model/
# What `python -m app selftest` checks is installed (scriptPackages in its header).
COPY requirements/script.txt /app/requirements/script.txt
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODEL_DIR=/app/model
# The intake journal (INTAKE_JOURNAL=disk): mount a volume here so that it outlives the container.
VOLUME ["/var/lib/edge-inference"]
USER 10001
# The HTTP liveness path (HTTP_PORT, default 5001); healthy as well when HTTP is turned off.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python", "-m", "app", "health"]
CMD ["python", "-m", "app"]
