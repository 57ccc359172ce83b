#!/usr/bin/env bash
# Installs the non-Python tools the test suite drives: promtool/prometheus and nginx (Debian), the
# Kubernetes CRD validators (npm, into .tools/). Idempotent; does nothing when they are present.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # the Debian package starts a system Prometheus on :9090; tests start their own
    ($SUDO systemctl disable --now prometheus >/dev/null 2>&1 || $SUDO service prometheus stop >/dev/null 2>&1) || true
fi

# nginx (Debian) is the reverse proxy of the rolling-restart reliability test, which starts its
# own nginx on 127.0.0.1 with its own config, prefix and pid file. The package's own service
# (port 80) is kept from starting by a temporary policy-rc.d, and stopped if it runs anyway.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    POLICY=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        POLICY=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
        $SUDO chmod 0755 "$POLICY"
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx >/dev/null
    if [ -n "$POLICY" ]; then $SUDO rm -f "$POLICY"; fi
    ($SUDO systemctl disable --now nginx >/dev/null 2>&1 || $SUDO service nginx stop >/dev/null 2>&1) || true
fi

if [ ! -d .tools/node_modules/@kubernetes-models/prometheus-operator ]; then
    mkdir -p .tools
    npm install --silent --no-audit --no-fund --prefix .tools \
        kubernetes-models@5.1.0 @kubernetes-models/prometheus-operator@6.0.0 >/dev/null
fi

# checkov (the chart's security-posture test) is large and pins many packages, so it lives in
# its own virtual environment rather than in .venv.
CHECKOV_VERSION=3.3.30
if ! .tools/checkov-venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('checkov') != '$CHECKOV_VERSION')" >/dev/null 2>&1; then
    mkdir -p .tools
    python3 -m venv .tools/checkov-venv
    .tools/checkov-venv/bin/pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi

# buildah and mmdebstrap (Debian) build the image from the Dockerfile and run it without a Docker
# engine (tests/ops/test_image_build.py). Where they cannot be installed, the reason is written to
# .tools/image-build-tools.unavailable and that test is skipped with it, loudly; without that file
# a missing tool fails the test.
IMAGE_TOOLS_UNAVAILABLE=.tools/image-build-tools.unavailable
if command -v buildah >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1; then
    rm -f "$IMAGE_TOOLS_UNAVAILABLE"
else
    mkdir -p .tools
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    reason=""
    if ! command -v apt-get >/dev/null 2>&1; then
        reason="apt-get is not available here, so buildah and mmdebstrap cannot be installed"
    elif [ -n "$SUDO" ] && ! sudo -n true >/dev/null 2>&1; then
        reason="buildah and mmdebstrap need root to install (no password-less sudo)"
    elif ! { $SUDO apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            -o DPkg::Lock::Timeout=600 buildah mmdebstrap >/dev/null; }; then
        reason="apt-get install buildah mmdebstrap failed"
    fi
    if [ -n "$reason" ]; then
        echo "$reason" > "$IMAGE_TOOLS_UNAVAILABLE"
        echo "WARNING: $reason: the image build test will be SKIPPED" >&2
    else
        rm -f "$IMAGE_TOOLS_UNAVAILABLE"
    fi
fi
