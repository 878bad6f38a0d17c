# linux/amd64 image of the edge inference module.
# Debian bookworm, like the arm64v8 and arm32v7 images, so all run Python 3.11 with the same pinned model stack
# (requirements/model.txt): the same model.pkl loads and predicts the same on each.
FROM debian:bookworm-slim AS build
# python3 itself follows bookworm's security updates; the model stack is pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
# Every file pip installs is named by its sha256 in requirements/lock/ (made by images/lock.py, `make lock`), so two
# builds of one commit install the same bytes. build.txt first: what pip needs to build the locked sdists
# (paho-mqtt), from hashed files as well, hence --no-build-isolation.
COPY requirements/lock/build.txt requirements/lock/runtime-amd64.txt /tmp/lock/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-build-isolation -r /tmp/lock/build.txt \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-build-isolation -r /tmp/lock/runtime-amd64.txt
# The scoring script's own packages (requirements/script.txt, see `python -m app script-deps`), in a step of their
# own so that changing them keeps the layer above. Locked with the runtime lock (and so the model stack) installed
# and pinned: a script's requirements can never replace them (images/lock.py fails instead).
COPY requirements/lock/script-amd64.txt /tmp/lock/
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-build-isolation \
      -r /tmp/lock/runtime-amd64.txt -r /tmp/lock/script-amd64.txt \
 && /opt/venv/bin/pip uninstall -y --disable-pip-version-check pip setuptools wheel \
 && find /opt/venv -name __pycache__ -type d -prune -exec rm -rf {} +

FROM debian:bookworm-slim
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
# OCI labels, last: they change with every commit and must not invalidate the cached layers above.
# images/build.sh fills them from git (revision, created = the commit's time) and module.json (version).
ARG VERSION=0.0.0
ARG MODEL=unknown
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=https://example.invalid/edge-inference-module
ARG LICENSES=NOASSERTION
ARG DESCRIPTION="Edge inference module: micro-batched scikit-learn scoring on IoT Edge"
LABEL org.opencontainers.image.title="edge-inference-module" \
      org.opencontainers.image.description="${DESCRIPTION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="${LICENSES}" \
      io.edge-inference.model="${MODEL}"
USER 10001
# The HTTP liveness path (HTTP_PORT, default 5001); healthy as well when HTTP is turned off.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python", "-m", "app", "health"]
CMD ["python", "-m", "app"]
