# syntax=docker/dockerfile:1
# mlops image: the `mlops` console script (controller and every step).
#
#   docker build -t mlops:0.1.0 .
#
# Runs as uid/gid 10001 with a read-only root filesystem: HOME, TMPDIR and every
# cache live under /tmp (an emptyDir in the chart, writable by any uid). The USER is
# numeric, so Kubernetes can check runAsNonRoot even when the platform assigns another
# uid (OpenShift restricted-v2, with the chart's podSecurityContext ids set to null). Versions are pinned: the base
# image by tag, Python packages by docker/constraints.txt.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- builder: build the mlops wheel and install it with its extras into /opt/venv ----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/src/docker/constraints.txt \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY docker/constraints.txt docker/constraints.txt
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install "pip==26.3"

COPY . .
# Binary wheels only for the dependencies: no compiler is needed (or present). The dask
# extra (dask, distributed, lightgbm, datasketches) is the data.engine: dask runtime.
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --only-binary=:all: \
      "$(ls /wheels/mlops-*.whl)[gcs,s3,k8s,report,dask,metrics]" \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && /opt/venv/bin/python -c "import mlops, mlops.config, dask.dataframe, distributed, lightgbm, datasketches" \
 && test -x /opt/venv/bin/mlops

# ---- final: slim runtime, no build tools, non-root ----
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="mlops" \
      org.opencontainers.image.description="Kubernetes-native nightly ML retrain suite" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# libgomp1: LightGBM's wheel links the system OpenMP runtime (the mlops[dask] extra:
# data.engine dask, training.model_type lightgbm).
# tini: Debian's package of the small init. As PID 1 it passes SIGTERM on to mlops (which
# records it and exits 143) and reaps the zombies of Dask's worker processes; without it
# mlops would be PID 1, and every deadline, eviction or delete would wait for SIGKILL.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends libgomp1 tini \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 mlops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin mlops

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /tmp

# The chart's step and Dask pods set the same init in their command (a command replaces
# the ENTRYPOINT).
ENTRYPOINT ["tini", "--", "mlops"]
CMD ["--help"]
