# syntax=docker/dockerfile:1
# gpuwire server on NVIDIA's CUDA base image. The NVIDIA driver is not in the image:
# the NVIDIA Container Toolkit brings the host's (docker run --gpus all).
# Build from the top of the source tree:
#   docker build -f docker/server.Dockerfile -t gpuwire-server .
# docs/deploy.md ("Containers") has the tokens, the certificate mount and `docker run`.

ARG CUDA_VERSION=13.0.1

# --- builder: gpuwire's wheel, with the native parts, from this source tree.
# The devel image has gcc and the headers the native build reads (cuda.h, nvml.h).
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04 AS build
# distribution packages follow the base image's archive; pinning their versions breaks rebuilds
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv make gcc \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN python3 -m venv /build-venv \
 && /build-venv/bin/pip install --no-cache-dir --disable-pip-version-check "setuptools>=64" wheel \
 && /build-venv/bin/pip wheel --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation -w /wheels .

# --- the server: CUDA base image (no toolkit), Python, gpuwire in /opt/gpuwire
FROM nvidia/cuda:${CUDA_VERSION}-base-ubuntu24.04
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PATH=/opt/gpuwire/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GPUWIRE_STATE_DIR=/var/lib/gpuwire \
    GPUWIRE_CACHE_DIR=/var/cache/gpuwire
# distribution packages follow the base image's archive; pinning their versions breaks rebuilds
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels/ /tmp/wheels/
RUN python3 -m venv /opt/gpuwire \
 && /opt/gpuwire/bin/pip install --no-cache-dir --disable-pip-version-check /tmp/wheels/gpuwire-*.whl \
 && rm -rf /tmp/wheels \
 && gpuwire version
# an unprivileged user with a fixed uid, so that a mounted key can be made readable to it
RUN groupadd --system --gid 10750 gpuwire \
 && useradd --system --uid 10750 --gid gpuwire --home-dir /var/lib/gpuwire --shell /usr/sbin/nologin gpuwire \
 && install -d -o gpuwire -g gpuwire -m 700 /var/lib/gpuwire /var/cache/gpuwire \
 && install -d -m 755 /etc/gpuwire/tls
# tokens (tokens.json, healthcheck.token) and the content cache outlive the container
VOLUME ["/var/lib/gpuwire", "/var/cache/gpuwire"]
USER 10750:10750
WORKDIR /var/lib/gpuwire
EXPOSE 7750
ENTRYPOINT ["gpuwire"]
# TLS and tokens are required: the server listens beyond loopback. The certificate comes
# from a read-only mount; the admin port stays inside the container (docker exec ... top).
CMD ["server", "--listen", "0.0.0.0:7750", "--driver", "nvidia", \
     "--tls-cert", "/etc/gpuwire/tls/server.pem", "--tls-key", "/etc/gpuwire/tls/server.key", \
     "--metrics", "127.0.0.1:7751"]
# a status probe as a client would make one: TLS, and a token of its own; the certificate's
# name comes from GPUWIRE_TLS_SERVER_NAME (docker run -e GPUWIRE_TLS_SERVER_NAME=gpu-box)
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["gpuwire", "status", "--server", "127.0.0.1:7750", "--token-file", "/var/lib/gpuwire/healthcheck.token", \
         "--tls", "--tls-ca", "/etc/gpuwire/tls/server.pem", "--rounds", "1", "--bytes", "0"]
