#!/bin/sh
# Make sure a Python >= 3.11 with the venv module exists, installing Debian's package if needed.
set -eu
python=${1:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
    echo "error: $python not found; install Python 3.11 or newer (Debian: apt-get install python3)" >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: Wayang needs Python 3.11 or newer; $python is $("$python" -V 2>&1)." >&2
    echo "       run: make PYTHON=python3.11 ..." >&2
    exit 1
fi
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing the Python venv module (Debian package python3-venv)"
        apt-get update -qq && apt-get install -y -qq python3-venv
    else
        echo "error: $python has no venv module; install it (Debian: sudo apt-get install python3-venv)" >&2
        exit 1
    fi
fi
