#!/usr/bin/env bash
# Makes a local stand-in for the official python:3.13-slim image, for building the Dockerfile
# where no registry can be reached (tests/ops/test_image_build.py, docs/deploy.md):
#
#   a Debian minbase root file system (mmdebstrap) with the run-time libraries CPython needs,
#   plus this machine's CPython 3.13 copied under /usr/local, with pip from its own ensurepip,
#   the way the official slim image lays it out (no tests, no idle/tkinter, no *.pyc, no static
#   library), committed with buildah as a local image.
#
# The copied interpreter was built against this host's Debian libraries, so the root file system
# uses the host's Debian suite. The image is tagged with a digest of its inputs (this script, the
# suite, the interpreter's files); when that tag already exists nothing is rebuilt. Older tags
# of the same repository are removed.
#
# Usage: scripts/local-base-image.sh [PYTHON]      (PYTHON: a CPython 3.13, default python3.13)
# Environment: BUILDAH_ROOT (default the tools cache of scripts/install-tools.sh, outside the
# clone: ${XDG_CACHE_HOME:-~/.cache}/clerk-sync/buildah): buildah's storage, with the vfs driver.
# Prints the image name on stdout; progress goes to stderr.
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$SELF")/.."

PYTHON=${1:-python3.13}
REPOSITORY=localhost/clerk-sync-python-base
ROOT=${BUILDAH_ROOT:-${CLERK_SYNC_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clerk-sync}/buildah}
ROOT=$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)
buildah() { command buildah --root "$ROOT/storage" --runroot "$ROOT/run" --storage-driver vfs "$@"; }

# What the official image installs next to CPython (its Dockerfile keeps the libraries found by
# ldd in /usr/local, plus these three).
PACKAGES=ca-certificates,netbase,tzdata,libbz2-1.0,libexpat1,libffi8,liblzma5,libncursesw6
PACKAGES=$PACKAGES,libreadline8,libsqlite3-0,libssl3,libtinfo6,libuuid1,zlib1g

# shellcheck disable=SC1091
SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [ -z "$SUITE" ]; then
    echo "local-base-image: cannot tell this host's Debian suite from /etc/os-release" >&2
    exit 1
fi

read -r VERSION PREFIX LDLIBRARY < <("$PYTHON" -c '
import sys, sysconfig
print("%d.%d.%d" % sys.version_info[:3], sys.base_prefix, sysconfig.get_config_var("LDLIBRARY"))')
case "$VERSION" in
    3.13.*) ;;
    *) echo "local-base-image: $PYTHON is Python $VERSION, not 3.13" >&2; exit 1 ;;
esac
if [ "$LDLIBRARY" != "libpython3.13.so" ] || [ ! -f "$PREFIX/lib/libpython3.13.so.1.0" ]; then
    echo "local-base-image: $PYTHON ($PREFIX) is not a shared-library build of CPython" >&2
    exit 1
fi

KEY=$( {
    cat "$SELF"
    echo "$SUITE $VERSION"
    sha256sum "$PREFIX/bin/python3.13" "$PREFIX/lib/libpython3.13.so.1.0" \
        "$PREFIX"/lib/python3.13/lib-dynload/*.so | cut -d' ' -f1
} | sha256sum | cut -c1-16)
IMAGE="$REPOSITORY:$VERSION-slim-$SUITE-$KEY"

if buildah inspect --type image "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE"
    exit 0
fi

WORK=$(mktemp -d)
CONTAINER=""
cleanup() {
    if [ -n "$CONTAINER" ]; then buildah rm "$CONTAINER" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Runs inside mmdebstrap's customize phase with the new root file system as $1.
cat > "$WORK/install-python.sh" <<'HOOK'
set -euo pipefail
root=$1
lib=$root/usr/local/lib
install -d "$root/usr/local/bin" "$lib" "$root/usr/local/include"
cp -a "$PREFIX/lib/libpython3.13.so.1.0" "$PREFIX/lib/libpython3.so" "$lib/"
ln -s libpython3.13.so.1.0 "$lib/libpython3.13.so"
cp -a "$PREFIX/include/python3.13" "$root/usr/local/include/"
tar -C "$PREFIX/lib" -cf - \
    --exclude='python3.13/site-packages/*' --exclude=__pycache__ \
    --exclude=python3.13/test --exclude=python3.13/idlelib --exclude=python3.13/tkinter \
    --exclude=python3.13/turtledemo --exclude='python3.13/lib-dynload/_tkinter*' \
    --exclude='libpython*.a' python3.13 | tar -C "$lib" -xf -
cp -a "$PREFIX/bin/python3.13" "$root/usr/local/bin/"
ln -s python3.13 "$root/usr/local/bin/python3"
ln -s python3 "$root/usr/local/bin/python"
# the interpreter's RUNPATH names its build prefix; inside the image the loader finds
# libpython in /usr/local/lib through ld.so.cache
chroot "$root" ldconfig
chroot "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PIP_ROOT_USER_ACTION=ignore \
    python3 -m ensurepip --default-pip
find "$root/usr/local" -depth \( -type d -name __pycache__ -o -type f -name '*.py[co]' \) \
    -exec rm -rf '{}' +
chroot "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin python3 -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, readline, uuid, pyexpat'
chroot "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin PIP_DISABLE_PIP_VERSION_CHECK=1 pip --version
HOOK

echo "local-base-image: building $IMAGE from Debian $SUITE and $PREFIX" >&2
export PREFIX
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="bash $WORK/install-python.sh \"\$1\"" \
    "$SUITE" "$WORK/rootfs.tar" >&2

CONTAINER=$(buildah from scratch)
buildah add --quiet "$CONTAINER" "$WORK/rootfs.tar" / >&2
buildah config \
    --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --env PYTHON_VERSION="$VERSION" \
    --cmd python3 \
    --label org.opencontainers.image.description="local stand-in for python:3.13-slim" \
    "$CONTAINER"
buildah commit --quiet --rm "$CONTAINER" "$IMAGE" >&2
CONTAINER=""

# earlier versions of the stand-in (other inputs) are of no further use
buildah images --format '{{.Name}}:{{.Tag}}' | while read -r old; do
    case "$old" in
        "$IMAGE") ;;
        "$REPOSITORY":*) buildah rmi "$old" >/dev/null 2>&1 || true ;;
    esac
done
echo "$IMAGE"
