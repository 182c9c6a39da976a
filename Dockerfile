# syntax=docker/dockerfile:1
# lineqa container images (docs/deployment.md):
#
#   serving  (default) the gateway with its embedded Triton (the nvidia-pytriton wheel's tritonserver), ONNX
#            Runtime and the review app; no torch
#   training           the same plus torch, torchvision and Ultralytics, for 'lineqa train/evaluate/export'
#
#   podman build --format docker --target serving -t lineqa-serving .   (docker build: without --format)
#   ... --secret id=ca,src=/path/to/corporate-ca-bundle.pem                   (HTTPS inspected by a proxy)
#
# The extra CA bundle is mounted for the pip steps only (PIP_CERT); it never lands in a layer. '--format
# docker' keeps the HEALTHCHECK (the OCI image format has no field for it).
#
# Configuration is by environment and mounted files: LINEQA_HOME (the data volume: database, images,
# models, pki), LINEQA_DB (a PostgreSQL URL instead of SQLite in the home), LINEQA_TRITON_URL
# (NVIDIA's Triton instead of the embedded one), LINEQA_HOST (listen address).

ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

# Debian's Python 3.11 ships libpython3.11.so, which Triton's Python-backend stub loads; tini reaps the
# embedded Triton's processes and forwards SIGTERM, so the gateway drains on 'stop'; util-linux (essential)
# has setpriv, which makes Triton die with a killed gateway.
FROM ${BASE_IMAGE} AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 libpython3.11 tini ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 lineqa \
    && useradd --system --uid 10001 --gid lineqa --create-home --home-dir /home/lineqa --shell /usr/sbin/nologin lineqa \
    && install -d -o lineqa -g lineqa -m 0750 /var/lib/lineqa

FROM runtime AS deps
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/lineqa
ENV PATH=/opt/lineqa/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# Dependencies first, from pyproject.toml alone: a source change does not download them again.
COPY pyproject.toml /src/
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
    && pip install --quiet -r /tmp/requirements.txt "setuptools>=77" wheel

FROM deps AS builder
COPY README.md /src/
COPY lineqa /src/lineqa
COPY vision /src/vision
COPY serving /src/serving
COPY review /src/review
COPY datasets /src/datasets
COPY fleet /src/fleet
COPY training /src/training
COPY protos /src/protos
RUN pip install --quiet --no-deps --no-build-isolation /src && pip uninstall --quiet -y setuptools wheel

# PyPI's Linux torch is the CUDA build (several GB, what a GPU training host wants). For a CPU-only image:
# --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu, or a local wheel folder mounted into the
# build (podman build -v /wheels:/wheels:ro --build-arg TORCH_FIND_LINKS=/wheels --build-arg TORCH_VERSION=...).
FROM deps AS training-deps
ARG TORCH_VERSION=""
ARG TORCH_INDEX_URL=""
ARG TORCH_FIND_LINKS=""
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && if [ -n "$TORCH_INDEX_URL" ]; then export PIP_EXTRA_INDEX_URL="$TORCH_INDEX_URL"; fi \
    && if [ -n "$TORCH_FIND_LINKS" ]; then export PIP_FIND_LINKS="$TORCH_FIND_LINKS"; fi \
    && python -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["optional-dependencies"]["train"]))' > /tmp/train.txt \
    && if [ -n "$TORCH_VERSION" ]; then echo "torch==$TORCH_VERSION" >> /tmp/train.txt; fi \
    && pip install --quiet -r /tmp/requirements.txt -r /tmp/train.txt \
    && headless="$(python -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')" \
    && pip uninstall --quiet -y opencv-python \
    && pip install --quiet --force-reinstall --no-deps "opencv-python-headless==$headless"

# The source last, on top of the training dependencies: a source change does not reinstall torch.
FROM training-deps AS training-builder
COPY --from=builder /src /src
RUN pip install --quiet --no-deps --no-build-isolation /src && pip uninstall --quiet -y setuptools wheel

# Ultralytics' opencv-python needs libGL; the headless build of the same version owns cv2 instead (as in
# scripts/venv.sh). Runs as the same user, on the same volume, as the serving image.
FROM runtime AS training
LABEL org.opencontainers.image.title=lineqa-training
COPY --from=training-builder /opt/lineqa /opt/lineqa
ENV PATH=/opt/lineqa/bin:$PATH LINEQA_HOME=/var/lib/lineqa YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
USER lineqa
WORKDIR /var/lib/lineqa
VOLUME ["/var/lib/lineqa"]
ENTRYPOINT ["tini", "--", "lineqa"]
CMD ["--help"]

FROM runtime AS serving
LABEL org.opencontainers.image.title=lineqa-serving
COPY --from=builder /opt/lineqa /opt/lineqa
# Caches and the embedded Triton's working folder go to /tmp, so the root file system can be read-only.
ENV PATH=/opt/lineqa/bin:$PATH LINEQA_HOME=/var/lib/lineqa LINEQA_HOST=0.0.0.0 PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/cache
USER lineqa
WORKDIR /var/lib/lineqa
VOLUME ["/var/lib/lineqa"]
# 50051 cameras (gRPC, TLS), 8443 review app (HTTPS), 9464 Prometheus metrics
EXPOSE 50051 8443 9464
# SERVING only while Triton, the models on the line and the record store are ready (RELIABILITY.md 4).
HEALTHCHECK --interval=15s --timeout=6s --start-period=120s --retries=3 CMD ["lineqa", "health", "--timeout-s", "4"]
ENTRYPOINT ["tini", "--", "lineqa"]
CMD ["serve"]
