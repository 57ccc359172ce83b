# syntax=docker/dockerfile:1
#
# clerk-sync image: the core service and the built-in plugins (users, sessions, organizations,
# billing).
#
#   docker build -t clerk-sync .
#   docker build -t clerk-sync --build-arg EXTRA_REQUIREMENTS="clerk-sync-audit-log==0.1.0" .
#   docker build -t clerk-sync --build-arg EXTRA_REQUIREMENTS=requirements-plugins.txt .
#
# EXTRA_REQUIREMENTS is either a requirements file inside the build context or one or more
# requirement specifiers separated by spaces. A derived image works too (docs/deploy.md).
#
# Without network access to an index (air-gapped), put every wheel the build needs in a
# directory of the build context and name it; pip then installs only from there:
#
#   docker build -t clerk-sync --build-arg WHEELHOUSE=wheelhouse .
#
# PYTHON_IMAGE replaces the base image of both stages (a mirror, or a local stand-in).

ARG PYTHON_IMAGE=python:3.13-slim

# ---- builder: wheels for the core, the built-in plugins and every dependency -------------
FROM ${PYTHON_IMAGE} AS builder

ARG WHEELHOUSE=""

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/ service/
COPY plugins/ plugins/

# One resolution for all five distributions: the plugins' `clerk-sync` requirement is met
# by the local core, never by an index. With WHEELHOUSE, dependencies and build backends come
# only from that directory of the build context.
RUN --mount=type=bind,source=.,target=/context \
    set --; \
    if [ -n "${WHEELHOUSE}" ]; then \
        if [ ! -d "/context/${WHEELHOUSE}" ]; then \
            echo "WHEELHOUSE=${WHEELHOUSE} is not a directory of the build context" >&2; \
            exit 1; \
        fi; \
        set -- --no-index --find-links "/context/${WHEELHOUSE}"; \
    fi; \
    pip wheel --no-cache-dir "$@" --wheel-dir /wheels \
        . \
        plugins/users \
        plugins/sessions \
        plugins/organizations \
        plugins/billing

# ---- runtime: no compilers, no caches, a fixed non-root user -----------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="clerk-sync" \
      org.opencontainers.image.description="Receives Clerk webhooks and keeps MongoDB in sync" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/clerk-sync/clerk-sync"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    CLERK_SYNC_DATA_DIR=/var/lib/clerk-sync

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# uid/gid 10001: the chart's runAsUser; numeric so the kubelet can verify runAsNonRoot.
# The data directory is only used by the embedded development store (no MONGODB_URL).
RUN groupadd --system --gid 10001 clerk-sync \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin clerk-sync \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/clerk-sync

# The wheels are bind-mounted from the builder, so none of them stays in a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index /wheels/*.whl \
    && pip check

# Plugin packages chosen at build time: a requirements file from the build context, or
# requirement specifiers separated by spaces (declared here, so that changing them reuses the
# layers above). With WHEELHOUSE they are installed from it only.
ARG EXTRA_REQUIREMENTS=""
ARG WHEELHOUSE=""
RUN --mount=type=bind,source=.,target=/context \
    if [ -n "${EXTRA_REQUIREMENTS}" ]; then \
        requirements="/context/${EXTRA_REQUIREMENTS}"; \
        if [ ! -f "${requirements}" ]; then \
            requirements=/tmp/extra-requirements.txt; \
            printf '%s\n' "${EXTRA_REQUIREMENTS}" | tr -s '[:blank:]' '\n' > "${requirements}"; \
        fi; \
        set --; \
        if [ -n "${WHEELHOUSE}" ]; then set -- --no-index --find-links "/context/${WHEELHOUSE}"; fi; \
        pip install --no-cache-dir "$@" -r "${requirements}" \
        && pip check \
        && rm -f /tmp/extra-requirements.txt; \
    fi

WORKDIR /app
USER 10001:10001
EXPOSE 8000

ENTRYPOINT ["clerk-sync"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
