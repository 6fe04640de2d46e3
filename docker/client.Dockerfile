# syntax=docker/dockerfile:1
# A gpuwire client with no NVIDIA software: no driver, no CUDA toolkit, no container
# toolkit. PyTorch's CUDA wheels come from the package registry; their CUDA calls go
# to a gpuwire server. Build from the top of the source tree:
#   docker build -f docker/client.Dockerfile -t gpuwire-client .
# Run (docs/deploy.md, "Containers"):
#   docker run --rm -e GPUWIRE_SERVER=gpu-box:7750 -e GPUWIRE_TOKEN_FILE=... -e GPUWIRE_TLS_CA=... gpuwire-client

ARG CUDA_VERSION=13.0.1

# --- builder: gpuwire's wheel from this source tree. Only this stage uses an NVIDIA
# image (for gcc and the cuda.h/nvml.h headers); nothing of it reaches the client image
# but the wheel. Its Python (3.12) is the client image's.
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

# --- the client: Python 3.12 on Debian 13 (its C library is newer than the builder's)
FROM python:3.12-slim-trixie
ARG TORCH_SPEC=torch
ENV PYTHONUNBUFFERED=1
COPY --from=build /wheels/ /tmp/wheels/
# the version of PyTorch is the build argument TORCH_SPEC (e.g. torch==2.9.*)
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --disable-pip-version-check /tmp/wheels/gpuwire-*.whl "${TORCH_SPEC}" \
 && rm -rf /tmp/wheels \
 && gpuwire version
RUN useradd --create-home --uid 10000 --shell /bin/bash app
USER 10000:10000
WORKDIR /home/app
# every command runs with its CUDA calls sent to $GPUWIRE_SERVER
ENTRYPOINT ["gpuwire", "run", "--"]
CMD ["python", "-c", "import torch; print(torch.cuda.get_device_name(0)); x = torch.arange(4.0, device='cuda'); print((x * x).sum().item())"]
