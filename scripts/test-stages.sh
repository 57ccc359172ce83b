#!/usr/bin/env bash
# `make test`: install, tools, lint, pytest, one after the other; stops at the first that fails,
# and prints how long each stage took at the end either way (docs/testing.md keeps the figures).
# Usage: scripts/test-stages.sh MAKE PYTEST [PYTEST-ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
MAKE_CMD=$1
PYTEST=$2
shift 2

names=()
seconds=()
failed=""
started_all=$EPOCHREALTIME

# seconds since a $EPOCHREALTIME reading
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

report() {
    local total
    total=$(since "$started_all")
    echo
    echo "make test: time per stage"
    for i in "${!names[@]}"; do
        printf '  %-8s %7.1f s\n' "${names[$i]}" "${seconds[$i]}"
    done
    local outcome=passed
    if [ -n "$failed" ]; then outcome="failed at $failed"; fi
    printf '  %-8s %7.1f s (%s)\n' total "$total" "$outcome"
}
trap report EXIT

stage() {
    local name=$1 start rc
    shift
    start=$EPOCHREALTIME
    "$@"
    rc=$?
    names+=("$name")
    seconds+=("$(since "$start")")
    if [ "$rc" != 0 ]; then
        failed=$name
        exit "$rc"
    fi
}

stage install "$MAKE_CMD" --no-print-directory install
stage tools "$MAKE_CMD" --no-print-directory tools
stage lint "$MAKE_CMD" --no-print-directory lint
stage pytest "$PYTEST" "$@"
