# linux/amd64 image of the edge inference module.
# The three images (Dockerfile, Dockerfile.arm64v8, Dockerfile.arm32v7) are alike but for the base: Debian trixie
# with its Python 3.13, and the model stack plus ONNX Runtime from Debian's packages at the versions
# requirements/model.txt pins (PyPI has no CPython 3.13 wheel of scikit-learn 1.4.2 and no armv7 wheels of the stack),
# so the same model.pkl loads and predicts alike on each. The rest comes from pip, into a venv that sees the system
# packages; the hash-checked lock leaves Debian's out, so pip cannot replace them.
FROM debian:trixie-slim AS build
# python3 itself follows trixie's security updates; the model stack and ONNX Runtime are pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
      python3-numpy='1:2.2.4+ds-*' python3-scipy='1.15.3-*' python3-sklearn='1.4.2+dfsg-*' \
      python3-joblib='1.4.2-*' python3-threadpoolctl='3.1.0-*' python3-onnxruntime='1.21.0+dfsg-*' \
 && rm -rf /var/lib/apt/lists/*
# Every file pip installs is named by its sha256 in requirements/lock/ (made by images/lock.py, `make lock`), so two
# builds of one commit install the same bytes. The lock leaves out Debian's packages above, and hash-checking mode
# installs nothing the lock does not name: pip cannot replace Debian's model stack. build.txt first: what pip needs
# to build the locked sdists (paho-mqtt), from hashed files as well, hence --no-build-isolation.
COPY requirements/lock/build.txt requirements/lock/runtime-amd64.txt /tmp/lock/
RUN python3 -m venv --system-site-packages /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-build-isolation -r /tmp/lock/build.txt \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-build-isolation -r /tmp/lock/runtime-amd64.txt
# The scoring script's own packages (requirements/script.txt, see `python -m app script-deps`), in a step of their
# own so that changing them keeps the layer above; locked with the runtime lock installed and pinned.
# Wheels only: the images have no compilers. images/check_script_deps.py (run by `make image` before the builds)
# names each package without a wheel; for those, add Debian's python3-<name> to both apt-get lines of all three
# Dockerfiles (the venv sees system packages, so pip takes Debian's as installed), pin that version in
# requirements/script.txt, and `make lock` (the lock leaves Debian's packages out).
COPY requirements/lock/script-amd64.txt /tmp/lock/
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-build-isolation --only-binary=:all: \
      -r /tmp/lock/runtime-amd64.txt -r /tmp/lock/script-amd64.txt \
 && /opt/venv/bin/pip uninstall -y --disable-pip-version-check pip setuptools wheel \
 && find /opt/venv -name __pycache__ -type d -prune -exec rm -rf {} +

FROM debian:trixie-slim
# python3 itself follows trixie's security updates; the model stack and ONNX Runtime are pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
      python3-numpy='1:2.2.4+ds-*' python3-scipy='1.15.3-*' python3-sklearn='1.4.2+dfsg-*' \
      python3-joblib='1.4.2-*' python3-threadpoolctl='3.1.0-*' python3-onnxruntime='1.21.0+dfsg-*' \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin module \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/edge-inference/journal
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY app/ /app/app/
# What the module shares with the repo's other edge programs (see edgekit/__init__.py).
COPY edgekit/ /app/edgekit/
# The default model; mount another model directory over /app/model (or set MODEL_DIR) to replace it.
COPY model/model.pkl model/model.onnx model/model.json /app/model/
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
