#!/usr/bin/env bash
# Installs the non-Python tools the test suite drives: promtool/prometheus, nginx, Chromium and
# chromedriver (Debian), the Kubernetes CRD validators (npm) and checkov. Idempotent; does nothing
# when they are present.
#
# The npm validators and checkov are kept outside the clone, in a cache keyed by their versions
# (CLERK_SYNC_TOOLS_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/clerk-sync; tests/tools.py reads
# the same place), and linked into .tools/, so a second clone on the same machine reuses them
# instead of downloading them again. A version bump gets a directory of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${CLERK_SYNC_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clerk-sync}
mkdir -p "$CACHE" .tools
# One install at a time per cache (two clones may run `make test` at once).
exec 9>"$CACHE/.install.lock"
flock 9

# link .tools/NAME to TARGET in the cache (replacing an older link or a pre-cache directory)
link_tool() {
    if [ "$(readlink ".tools/$1" 2>/dev/null)" != "$2" ]; then
        rm -rf ".tools/$1"
        ln -s "$2" ".tools/$1"
    fi
}

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 prometheus >/dev/null
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
    $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 nginx >/dev/null
    if [ -n "$POLICY" ]; then $SUDO rm -f "$POLICY"; fi
    ($SUDO systemctl disable --now nginx >/dev/null 2>&1 || $SUDO service nginx stop >/dev/null 2>&1) || true
fi

# Chromium and its WebDriver (Debian) run the console's browser test (tests/test_console_browser.py),
# which drives /usr/bin/chromium through /usr/bin/chromedriver with Selenium; nothing is downloaded
# at test time.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=600 chromium chromium-driver >/dev/null
fi

# The CRD validators: installed into a scratch directory and renamed into place when complete,
# so an interrupted install never leaves a half-filled cache entry.
NPM_TOOLS="kubernetes-models@5.1.0 @kubernetes-models/prometheus-operator@6.0.0"
NPM_DIR="$CACHE/npm-$(echo "$NPM_TOOLS" | tr ' /@' '_+-')"
if [ ! -d "$NPM_DIR/node_modules/@kubernetes-models/prometheus-operator" ]; then
    rm -rf "$NPM_DIR.tmp"
    # shellcheck disable=SC2086
    npm install --silent --no-audit --no-fund --prefix "$NPM_DIR.tmp" $NPM_TOOLS >/dev/null
    rm -rf "$NPM_DIR"
    mv "$NPM_DIR.tmp" "$NPM_DIR"
fi
link_tool node_modules "$NPM_DIR/node_modules"

# checkov (the chart's security-posture test) is large and pins many packages, so it lives in
# its own virtual environment rather than in .venv.
# A venv cannot be moved (its scripts name their interpreter by path), so it is made in place
# and marked complete last.
CHECKOV_VERSION=3.3.30
CHECKOV_DIR="$CACHE/checkov-$CHECKOV_VERSION-py$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ ! -e "$CHECKOV_DIR/.complete" ] \
    || ! "$CHECKOV_DIR/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('checkov') != '$CHECKOV_VERSION')" >/dev/null 2>&1; then
    rm -rf "$CHECKOV_DIR"
    python3 -m venv "$CHECKOV_DIR"
    "$CHECKOV_DIR/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
    touch "$CHECKOV_DIR/.complete"
fi
link_tool checkov-venv "$CHECKOV_DIR"

# buildah and mmdebstrap (Debian) build the image from the Dockerfile and run it without a Docker
# engine (tests/ops/test_image_build.py). Where they cannot be installed, the reason is written to
# .tools/image-build-tools.unavailable and that test is skipped with it, loudly; without that file
# a missing tool fails the test.
IMAGE_TOOLS_UNAVAILABLE=.tools/image-build-tools.unavailable
if command -v buildah >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1; then
    rm -f "$IMAGE_TOOLS_UNAVAILABLE"
else
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    reason=""
    if ! command -v apt-get >/dev/null 2>&1; then
        reason="apt-get is not available here, so buildah and mmdebstrap cannot be installed"
    elif [ -n "$SUDO" ] && ! sudo -n true >/dev/null 2>&1; then
        reason="buildah and mmdebstrap need root to install (no password-less sudo)"
    elif ! { $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600 \
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
