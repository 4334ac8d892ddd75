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
#                     (the local runtime sets it to its own; see README). If the component's
#                     user can't run its interpreter, a venv over a same-version interpreter
#                     the user can run ($GGIC_PYTHON, pythonX.Y) sees its packages instead.
#   GGIC_DLR_VENV     variant.DLR's environment, {MLRootPath}/greengrass_ml_dlr_venv (set by
#                     the classifier's aarch64/armv7l manifests; relative to WORK_DIR): build
#                     the venv on top of it instead (its dlr and libdlr.so, the OS's or its
#                     numpy and OpenCV; nothing compiled). GGIC_REUSE_VENV is then ignored.
set -eu

artifact=$1
work=$2
model_source=${3:-}

owner=$(stat -c %u "$work")
group=$(stat -c %g "$work")

as_owner() {
    # Run "$@" as the work directory's owner (drop root if we have it). setpriv keeps root's
    # capabilities until its exec, so a command is only proven runnable by the owner when
    # the owner's own shell starts it.
    if [ "$(id -u)" = "0" ] && [ "$owner" != "0" ]; then
        setpriv --reuid="$owner" --regid="$group" --init-groups -- "$@"
    else
        "$@"
    fi
}

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

ensure_awsiotsdk() {
    if ! "$venv/bin/python" -c 'import awsiot.greengrasscoreipc.clientv2' 2> /dev/null; then
        step=$(now)
        as_owner "$venv/bin/python" -m ensurepip --default-pip > /dev/null
        as_owner "$venv/bin/python" -m pip install --disable-pip-version-check --no-cache-dir \
            --quiet 'awsiotsdk>=1.21,<2'
        echo "pip install awsiotsdk: $(took "$step")"
    fi
}

# Off x86_64, for a component that needs no DLR, numpy or OpenCV (the requester): a venv with
# the system's site packages and awsiotsdk; ggic comes from the artifact (PYTHONPATH).
install_awsiotsdk_venv() {
    started=$(now)
    marker=$venv/.ggic-installed-from
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "$artifact" ] && [ -x "$venv/bin/python" ]
    then
        echo "virtual environment $venv is up to date"
        return
    fi
    if [ -L "$venv" ]; then rm -f "$venv"; else rm -rf "$venv"; fi
    as_owner "${GGIC_PYTHON:-python3}" -m venv --without-pip --system-site-packages "$venv"
    ensure_awsiotsdk
    as_owner sh -c 'printf "%s" "$1" > "$2"' sh "$artifact" "$marker"
    echo "installed $venv (awsiotsdk, system site packages): $(took "$started")"
}

# On aarch64/armv7l PyPI has no libdlr.so (and on armv7l no numpy/OpenCV wheels): build the
# venv on top of variant.DLR's, with the system's site packages, and compile nothing.
# Imports come from: this venv (awsiotsdk if nothing else has it), variant.DLR's venv (dlr,
# and whatever its installer pip-installed), the OS (python3-numpy, python3-opencv). ggic
# itself comes from the artifact (the Run command's PYTHONPATH).
install_on_variant_dlr() {
    started=$(now)
    case $GGIC_DLR_VENV in
        /*) dlr_venv=$GGIC_DLR_VENV ;;
        *) dlr_venv=$work/$GGIC_DLR_VENV ;;  # may not exist yet: resolved once it does
    esac
    python=$dlr_venv/bin/python3
    # The nucleus runs Install steps without waiting for dependencies (only Run waits), so
    # variant.DLR's installer may still be at work: wait for its venv to hold dlr.
    waited=0
    wait_max=${GGIC_DLR_WAIT_SECONDS:-600}
    until [ -x "$python" ] && "$python" -c 'import importlib.util, sys
sys.exit(importlib.util.find_spec("dlr") is None)' 2> /dev/null; do
        if [ "$waited" -ge "$wait_max" ]; then
            echo "variant.DLR's environment $dlr_venv has no dlr after ${wait_max} s: deploy" \
                 "variant.DLR with this component (the classifier reports ERRORED until DLR" \
                 "is there)" >&2
            [ -x "$python" ] || python=${GGIC_PYTHON:-python3}
            break
        fi
        if [ "$waited" = 0 ]; then echo "waiting for variant.DLR's installer ($dlr_venv)"; fi
        sleep 2
        waited=$((waited + 2))
    done
    if [ -d "$dlr_venv" ]; then dlr_venv=$(cd "$dlr_venv" && pwd); fi
    if [ -x "$dlr_venv/bin/python3" ]; then python=$dlr_venv/bin/python3; fi
    marker=$venv/.ggic-installed-from
    stamp="$artifact $dlr_venv"
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "$stamp" ] && [ -x "$venv/bin/python" ]; then
        echo "virtual environment $venv (on variant.DLR's $dlr_venv) is up to date"
        return
    fi
    if [ -L "$venv" ]; then rm -f "$venv"; else rm -rf "$venv"; fi
    as_owner "$python" -m venv --without-pip --system-site-packages "$venv"
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    if [ -x "$dlr_venv/bin/python3" ]; then
        dlr_site=$("$dlr_venv/bin/python3" -c \
            'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        # addsitedir, not a plain path: it also reads variant.DLR's .pth files (a source-built
        # dlr is an egg listed in easy-install.pth)
        as_owner sh -c 'printf "import site; site.addsitedir(%s)\n" "$1" > "$2"' sh \
            "'$dlr_site'" "$site/ggic-variant-dlr.pth"
        # dlr 1.6 looks for libdlr.so first in <sys.prefix>/dlr/, where its wheel puts it:
        # <this venv>/dlr/libdlr.so -> variant.DLR's
        if [ -f "$dlr_venv/dlr/libdlr.so" ]; then
            as_owner mkdir -p "$venv/dlr"
            as_owner ln -sfn "$dlr_venv/dlr/libdlr.so" "$venv/dlr/libdlr.so"
        fi
    fi
    echo "venv $venv on $python with system site packages: $(took "$started")"
    if ! "$venv/bin/python" -c 'import numpy, cv2' 2> /dev/null; then
        echo "numpy and OpenCV are not importable from $venv: deploy variant.DLR (its" \
             "installer provides them) or install the OS's python3-numpy python3-opencv" >&2
        exit 1
    fi
    ensure_awsiotsdk
    as_owner env PYTHONPATH="$artifact/components" PYTHONDONTWRITEBYTECODE=1 \
        "$venv/bin/python" - "$dlr_venv" <<'PY' || true
import sys
import cv2
import numpy
import awsiot
line = (f"python {sys.version.split()[0]}; numpy {numpy.__version__} "
        f"({numpy.__file__.rsplit('/', 2)[0]}); opencv {cv2.__version__}")
try:
    from ggic.classifier.backends.dlr import import_dlr
    dlr = import_dlr()
    from dlr.libpath import find_lib_path
    line += f"; dlr {dlr.__version__} ({dlr.__file__.rsplit('/', 2)[0]}), {find_lib_path()}"
except Exception as exc:  # the classifier says what to deploy
    line += f"; no usable DLR ({exc}): deploy variant.DLR ({sys.argv[1]})"
print(line)
PY
    as_owner sh -c 'printf "%s" "$1" > "$2"' sh "$stamp" "$marker"
    echo "installed the classifier's venv $venv on variant.DLR: $(took "$started")"
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
if [ -n "${GGIC_DLR_VENV:-}" ]; then
    install_on_variant_dlr
    exit 0
fi
case $(uname -m) in
    x86_64|amd64) ;;
    *)  # the requester on a Raspberry Pi/Jetson: it needs awsiotsdk only
        install_awsiotsdk_venv
        exit 0 ;;
esac
if [ -n "${GGIC_REUSE_VENV:-}" ]; then
    reused=$GGIC_REUSE_VENV
    # (through sh, as the Run step starts it: setpriv's own exec can reach what the user can't)
    if as_owner sh -c '"$0" -c "import sys"' "$reused/bin/python" 2>/dev/null; then
        if [ -d "$venv" ] && [ ! -L "$venv" ]; then rm -rf "$venv"; fi
        as_owner ln -sfn "$reused" "$venv"
        echo "using the existing virtual environment $reused"
        exit 0
    fi
    # The component's user can't run the reused environment's interpreter (typically a
    # Python under /root, mode 0700). Make it reachable: a virtual environment over an
    # interpreter of the same version that the user can run, seeing the reused environment's
    # packages (they must be readable by the user). Else say what to do.
    # (read from its files: this step may run as that user, who can't run its interpreter)
    version=$(sed -n 's/^version[_info]* *= *\([0-9]*\.[0-9]*\).*/\1/p' "$reused/pyvenv.cfg" \
              2>/dev/null | head -n 1)
    packages=$reused/lib/python$version/site-packages
    if [ -z "$version" ] || [ ! -d "$packages" ]; then
        echo "can't use the reused environment $reused (no pyvenv.cfg version or no" \
             "$packages): start ggic local with --build-venvs" >&2
        exit 1
    fi
    bridge=
    for candidate in ${GGIC_PYTHON:-} "python$version" "/usr/bin/python$version" \
                     "/usr/local/bin/python$version"; do
        # the path the user's own lookup finds (setpriv's exec would still see root's)
        found=$(as_owner sh -c 'command -v "$0"' "$candidate" 2>/dev/null) || continue
        if as_owner sh -c '"$0" -c "import sys; sys.exit(\"%d.%d\" % sys.version_info[:2] != \"$1\")"' \
                "$found" "$version" 2>/dev/null; then
            bridge=$found
            break
        fi
    done
    if [ -z "$bridge" ]; then
        echo "the component's user (uid $owner) can't run the reused environment $reused and" \
             "no python$version it can run was found: start ggic local with --build-venvs," \
             "or set GGIC_PYTHON to a python$version that user can run" >&2
        exit 1
    fi
    rm -rf "$venv"
    as_owner "$bridge" -m venv --without-pip "$venv"
    site=$(as_owner sh -c '"$0" -c "import sysconfig; print(sysconfig.get_paths()[\"purelib\"])"' \
           "$venv/bin/python")
    as_owner sh -c 'printf "import site; site.addsitedir(%s)\n" "$1" > "$2"' sh \
        "'$packages'" "$site/ggic-reused-environment.pth"
    # what wheels put in the environment's own root (dlr: <venv>/dlr/libdlr.so, found
    # through sys.prefix) is linked too
    for entry in "$reused"/*; do
        case ${entry##*/} in
            bin|lib|lib64|include|pyvenv.cfg) ;;
            *) as_owner ln -sfn "$entry" "$venv/${entry##*/}" ;;
        esac
    done
    if ! as_owner sh -c '"$0" -c "import awsiot"' "$venv/bin/python" 2>/dev/null; then
        echo "the component's user (uid $owner) can't read the reused environment's packages" \
             "$packages: start ggic local with --build-venvs, or make them readable" >&2
        exit 1
    fi
    echo "using the existing virtual environment $reused through $bridge (its interpreter" \
         "is not reachable by uid $owner)"
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
