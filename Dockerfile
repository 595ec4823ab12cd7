# syntax=docker/dockerfile:1
#
# The sampleplan service: `sampleplan serve` on port 8000, as a non-root user, with a
# health check. Two stages: the first builds a virtualenv (CPU-only torch, exact pins
# from docker/requirements.txt, the project's own wheel); the second is a slim Python with
# that virtualenv and nothing else (no compiler, no pip cache, no sources).
#
#   docker build -t sampleplan .
#   docker run -p 8000:8000 -v sampleplan-data:/data sampleplan
#
# SQLite lives in the /data volume by default; set SAMPLEPLAN_DATABASE_URL to a
# postgresql:// URL to run several replicas (see compose.yaml).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# torch first, from the CPU-only index: PyPI's default torch pulls in gigabytes of CUDA.
# The version is the one constraints.txt pins (the streams are promised for it only).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY constraints.txt docker/requirements.txt ./
RUN pip install -c constraints.txt -r requirements.txt
COPY pyproject.toml README.md ./
COPY sampleplan ./sampleplan
COPY service ./service
COPY client ./client
# The project itself, built with the pinned setuptools and resolving nothing again.
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && pip install --no-deps /wheels/sampleplan-*.whl \
    && pip check

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SAMPLEPLAN_DATABASE_URL=sqlite:////data/sampleplan.sqlite3 \
    SAMPLEPLAN_LOG_FORMAT=json
RUN groupadd --system --gid 10001 sampleplan \
    && useradd --system --uid 10001 --gid sampleplan --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sampleplan \
    && mkdir /data \
    && chown sampleplan:sampleplan /data
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# Liveness only (the process answers); /readyz also checks the database, for a load
# balancer's readiness probe. Python's urllib: the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["sampleplan", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8000"]
