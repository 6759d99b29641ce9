# predictd's container image. Build with `make image` (docs/deploy.md, "Container image").
#
# The base is a build argument so the same file builds from the public image on a user's
# machine and from a stand-in offline (tests/deploy/test_image.py imports a Debian bookworm
# minbase under this name). Nothing below assumes where python3 lives (/usr/local/bin on the
# official image, /usr/bin on Debian): it is reached through PATH only.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Wheels made beforehand for a build that reaches no index (`make image OFFLINE=1` fills
# deploy/image/wheels and sets PIP_NO_INDEX=1); empty otherwise, and pip uses its index.
ARG PIP_NO_INDEX
# Optional extras, comma-separated (`make image EXTRAS=onnx,otel`): onnx, otel, azure,
# parquet, fsspec, mlflow.
ARG PREDICTD_EXTRAS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY deploy/image/wheels/ /tmp/wheels/
COPY pyproject.toml README.md /tmp/predictd/
COPY src/ /tmp/predictd/src/
# predictd is built from this checkout's source, never fetched by name from an index (where
# anyone could publish a higher version). Only the installed package goes into the venv; the
# source tree stays in this stage.
RUN python3 -m venv /opt/predictd \
    && /opt/predictd/bin/pip install --find-links /tmp/wheels \
       "/tmp/predictd${PREDICTD_EXTRAS:+[$PREDICTD_EXTRAS]}" \
    && /opt/predictd/bin/predictd --help >/dev/null

FROM ${BASE_IMAGE}
# A fixed uid/gid, so a volume's owner can be set before the first start (chown 10001) and
# Kubernetes' runAsUser/fsGroup can name it.
RUN groupadd --system --gid 10001 predictd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/predictd \
       --no-create-home --shell /usr/sbin/nologin predictd \
    && mkdir -p /var/lib/predictd \
    && chown 10001:10001 /var/lib/predictd
COPY --from=build /opt/predictd /opt/predictd
# Everything predictd writes lives under the one volume, so the root filesystem can be
# mounted read-only. Auth stays on (the default, said here explicitly): inside a container
# predictd must listen on 0.0.0.0, and `serve` refuses auth off on a non-loopback address.
ENV PATH=/opt/predictd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PREDICTD_HOST=0.0.0.0 \
    PREDICTD_PORT=8000 \
    PREDICTD_AUTH=on \
    PREDICTD_SPOOL_DIR=/var/lib/predictd/spool \
    PREDICTD_ARTIFACT_DIR=/var/lib/predictd/artifacts \
    DATABASE_URL=sqlite:////var/lib/predictd/predictd.db
VOLUME ["/var/lib/predictd"]
WORKDIR /var/lib/predictd
USER 10001:10001
EXPOSE 8000
# SIGTERM starts predictd's drain: /ready answers 503 for PREDICTD_SHUTDOWN_DELAY_S (5 s),
# then up to PREDICTD_SHUTDOWN_FLUSH_S (10 s) ships the queue. Give it a stop grace above
# their sum: `docker stop -t 30`, compose `stop_grace_period: 30s`.
STOPSIGNAL SIGTERM
# /health is liveness (touches nothing external). No curl in a slim image: Python's urllib,
# which exits non-zero on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PREDICTD_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["predictd"]
CMD ["serve"]
