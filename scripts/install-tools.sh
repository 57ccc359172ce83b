#!/usr/bin/env bash
# Installs the non-Python tools the test suite drives: promtool/prometheus (Debian) and the
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
