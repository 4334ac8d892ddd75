#!/bin/sh
# Install step of the ggic components (recipes/*.yaml). Runs with RequiresPrivilege only so
# that it can copy the ModelStore's model, whose artifacts are Read: OWNER (root). Everything
# else -- the virtual environment and pip -- runs as the component's own user (the owner of
# its work directory), never as root, and never system-wide.
#
# usage: component-install.sh ARTIFACT_DIR WORK_DIR [MODEL_SOURCE_DIR]
#   ARTIFACT_DIR      the unpacked ggic.zip (holds pyproject.toml)
#   WORK_DIR          the component's {work:path}
#   MODEL_SOURCE_DIR  the ModelStore model for this platform; copied to WORK_DIR/model
# environment:
#   GGIC_REUSE_VENV   use this existing virtual environment instead of building one
#                     (the local runtime sets it to its own; see README)
set -eu

artifact=$1
work=$2
model_source=${3:-}

owner=$(stat -c %u "$work")
group=$(stat -c %g "$work")

as_owner() {
    # Run "$@" as the work directory's owner (drop root if we have it).
    if [ "$(id -u)" = "0" ] && [ "$owner" != "0" ]; then
        setpriv --reuid="$owner" --regid="$group" --init-groups -- "$@"
    else
        "$@"
    fi
}

# 1. The ModelStore model, copied where the component's user can read it (privileged part).
if [ -n "$model_source" ]; then
    if [ -d "$model_source" ]; then
        rm -rf "$work/model.new"
        cp -R "$model_source" "$work/model.new"
        if [ "$(id -u)" = "0" ]; then
            chown -R "$owner:$group" "$work/model.new"
        fi
        rm -rf "$work/model"
        mv "$work/model.new" "$work/model"
        echo "copied the ModelStore model $model_source to $work/model"
    else
        echo "no ModelStore model at $model_source; set ModelDir to a model directory" >&2
    fi
fi

# 2. The Python environment (unprivileged).
venv=$work/venv
if [ -n "${GGIC_REUSE_VENV:-}" ]; then
    as_owner ln -sfn "$GGIC_REUSE_VENV" "$venv"
    echo "using the existing virtual environment $GGIC_REUSE_VENV"
    exit 0
fi
marker=$venv/.ggic-installed-from
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$artifact" ]; then
    echo "virtual environment $venv is up to date"
    exit 0
fi
python=${GGIC_PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
    echo "ggic needs Python 3.9 or newer as $python (set GGIC_PYTHON to another interpreter)" >&2
    exit 1
fi
if [ -L "$venv" ]; then rm -f "$venv"; fi
as_owner "$python" -m venv "$venv"
# Artifacts are read-only for the component's user and pip builds in the source tree:
# install from a private copy.
source_copy=$work/.ggic-source
rm -rf "$source_copy"
as_owner cp -R "$artifact" "$source_copy"
as_owner "$venv/bin/python" -m pip install --disable-pip-version-check --no-cache-dir \
    --quiet "$source_copy"
rm -rf "$source_copy"
as_owner sh -c 'printf "%s" "$1" > "$2"' sh "$artifact" "$marker"
echo "installed ggic into $venv"
