#!/bin/sh
# Set up a development/demo environment in .venv: the ggic package (editable) with the
# demo and test extras. Safe to run again.
set -eu
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
    echo "ggic needs Python 3.9 or newer (set PYTHON=/path/to/python3.x)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --disable-pip-version-check --quiet -e '.[dev]'
echo "ggic is installed in .venv ($(.venv/bin/ggic --version))"
