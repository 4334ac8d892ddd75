#!/bin/sh
# Run the classifier on an emulated arm64 (or armhf) Debian, from the recipe's own Install and
# Run commands, as a Raspberry Pi 4 / Jetson would: QEMU user-mode emulation (Debian's
# qemu-user-static, registered with binfmt_misc) and a Debian root filesystem made with
# debootstrap. Needs root (chroot, binfmt_misc, debootstrap).
#
# usage: scripts/arm-emulation.sh [--arch arm64|armhf] rootfs
#            create (once) and cache the root filesystem with python3, python3-venv, libgomp1,
#            python3-numpy, python3-opencv from Debian
#        scripts/arm-emulation.sh [--arch arm64|armhf] run --libdlr FILE --model DIR [--json]
#                                                          IMAGE...
#            lay out a variant.DLR environment that carries FILE (a libdlr.so built for the
#            architecture), run the classifier recipe's Install step, then classify IMAGE...
#            with its Run command's interpreter and package (`ggic classify`)
#        scripts/arm-emulation.sh [--arch ...] shell   a shell in the root filesystem
# environment:
#   GGIC_ARM_CACHE   where root filesystems are cached (default: .ggic/arm-rootfs in the
#                    repository); one folder per architecture
#   GGIC_LIBDLR      default for --libdlr (else $GGIC_ARM_CACHE/libdlr/<machine>/libdlr.so)
#   DEBIAN_MIRROR    default: the first Debian mirror apt uses here, else deb.debian.org
#
# Nothing here builds DLR: --libdlr takes a library built elsewhere (README, "Raspberry Pi and
# Jetson"). The rootfs's apt installs Debian packages only; the Install step's pip installs
# ggic and awsiotsdk from PyPI into the component's venv as on a device.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
arch=arm64
if [ "${1:-}" = "--arch" ]; then arch=$2; shift 2; fi
case $arch in
    arm64) qemu=aarch64; machine=aarch64 ;;
    armhf) qemu=arm; machine=armv7l ;;
    *) echo "--arch: arm64 or armhf, not $arch" >&2; exit 2 ;;
esac
cache=${GGIC_ARM_CACHE:-$repo/.ggic/arm-rootfs}
rootfs=$cache/$arch
suite=bookworm
packages=python3,python3-venv,python3-numpy,python3-opencv,libgomp1,ca-certificates
command=${1:-}
[ -n "$command" ] && shift

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

need_root() {
    if [ "$(id -u)" != "0" ]; then echo "arm-emulation.sh needs root (chroot)" >&2; exit 1; fi
}

register_binfmt() {
    # QEMU's handler for $qemu, loaded now (F flag) so that it also works inside the chroot.
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$qemu" ]; then
        conf=/usr/lib/binfmt.d/qemu-$qemu.conf
        if [ ! -f "$conf" ]; then
            echo "no $conf: apt-get install qemu-user-static" >&2; exit 1
        fi
        cat "$conf" > /proc/sys/fs/binfmt_misc/register
        echo "registered qemu-$qemu with binfmt_misc"
    fi
}

mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    found=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
            /etc/apt/sources.list.d/ 2>/dev/null | head -n 1 | tr -d ' ')
    echo "${found:-http://deb.debian.org/debian}"
}

mount_special() {
    for fs in proc sys dev; do
        if ! mountpoint -q "$rootfs/$fs"; then
            case $fs in
                proc) mount -t proc proc "$rootfs/proc" ;;
                sys) mount --rbind /sys "$rootfs/sys" ;;
                dev) mount --rbind /dev "$rootfs/dev" ;;
            esac
        fi
    done
}

umount_special() {
    for fs in dev sys proc; do
        if mountpoint -q "$rootfs/$fs"; then umount -R "$rootfs/$fs" || umount -lR "$rootfs/$fs"; fi
    done
}

make_rootfs() {
    need_root
    register_binfmt
    if [ -f "$rootfs/.ggic-ready" ]; then
        echo "root filesystem $rootfs is ready ($(cat "$rootfs/.ggic-ready"))"
        return
    fi
    command -v debootstrap > /dev/null || { echo "apt-get install debootstrap" >&2; exit 1; }
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    started=$(now)
    debootstrap --arch="$arch" --variant=minbase --include="$packages" "$suite" "$rootfs" \
        "$(mirror)" > "$cache/debootstrap-$arch.log" 2>&1 || {
        echo "debootstrap failed; see $cache/debootstrap-$arch.log" >&2; exit 1; }
    echo "debootstrap $suite $arch with $packages: $(took "$started")"
    chroot "$rootfs" python3 -c 'import platform, numpy, cv2; print("rootfs python",
        platform.python_version(), platform.machine(), "numpy", numpy.__version__,
        "opencv", cv2.__version__)'
    du -sh "$rootfs" | awk '{ print "root filesystem size " $1 }'
    chroot "$rootfs" python3 -c 'import platform; print(platform.machine())' \
        > "$rootfs/.ggic-ready"
}

# Where the arm rootfs keeps things, as on a device: Greengrass's root and the ggic artifact.
gg=/greengrass/v2
work_dlr=$gg/work/variant.DLR
work_classifier=$gg/work/com.custom.ImageClassifier
artifact=$gg/packages/artifacts-unarchived/com.custom.ImageClassifier/1.0.0/ggic

run_classifier() {
    need_root
    libdlr=${GGIC_LIBDLR:-}
    model=
    classify_args=
    while [ $# -gt 0 ]; do
        case $1 in
            --libdlr) libdlr=$2; shift 2 ;;
            --model) model=$2; shift 2 ;;
            --json) classify_args=--json; shift ;;
            --) shift; break ;;
            -*) echo "unknown option $1" >&2; exit 2 ;;
            *) break ;;
        esac
    done
    if [ -z "$libdlr" ]; then libdlr=$cache/libdlr/$machine/libdlr.so; fi
    if [ ! -f "$libdlr" ]; then
        echo "--libdlr: a libdlr.so built for $machine is needed (got '${libdlr}')" >&2; exit 2
    fi
    if [ -z "$model" ] || [ ! -d "$model" ]; then
        echo "--model: a DLR model directory compiled for $machine is needed" >&2; exit 2
    fi
    if [ ! -f "$rootfs/.ggic-ready" ]; then
        echo "no root filesystem at $rootfs: run '$0 --arch $arch rootfs' first" >&2; exit 1
    fi
    register_binfmt
    mount_special
    trap umount_special EXIT INT TERM
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
    # pip in the chroot trusts what the host trusts (a proxy's CA, if the host has one)
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/host-ca-certificates.crt"
    PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt
    export PIP_CERT REQUESTS_CA_BUNDLE=$PIP_CERT SSL_CERT_FILE=$PIP_CERT
    unset PIP_FIND_LINKS PIP_CONSTRAINT PIP_EXTRA_INDEX_URL 2>/dev/null || true

    # 1. variant.DLR, laid out as its installer lays it out on a Raspberry Pi/Jetson:
    #    {MLRootPath}/greengrass_ml_dlr_venv, a venv over the system's python3 with the system's
    #    site packages, holding the dlr package, and libdlr.so at <venv>/dlr/libdlr.so (where
    #    the dlr 1.6.0 wheel's data_files put it).
    started=$(now)
    ml_root=$work_dlr/greengrass_ml
    dlr_venv=$ml_root/greengrass_ml_dlr_venv
    rm -rf "$rootfs$work_dlr" "$rootfs$work_classifier"
    mkdir -p "$rootfs$ml_root" "$rootfs$work_classifier"
    chroot "$rootfs" python3 -m venv --system-site-packages "$dlr_venv"
    site=$(chroot "$rootfs" "$dlr_venv/bin/python" -c \
        'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    mkdir -p "$rootfs$dlr_venv/dlr"
    cp "$libdlr" "$rootfs$dlr_venv/dlr/libdlr.so"
    # the dlr 1.6.0 Python package: the one in this repository's venv (x86_64's wheel; the
    # package is pure Python, the same for every architecture)
    src_site=$("$repo/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    mkdir -p "$rootfs$site/dlr"
    (cd "$src_site/dlr" && find . -name '*.py' -o -name '*.json' | grep -v __pycache__ \
        | tar -cf - -T -) | tar -xf - -C "$rootfs$site/dlr"
    cp -R "$src_site"/dlr-1.6.0.dist-info "$rootfs$site/" 2>/dev/null || true
    echo "variant.DLR laid out at $dlr_venv: $(took "$started")"

    # 2. The component's artifact (what `ggic build` zips) and the ModelStore's model.
    rm -rf "$rootfs$artifact"
    mkdir -p "$rootfs$artifact"
    (cd "$repo" && git ls-files -z components scripts pyproject.toml README.md \
        | xargs -0 tar -cf -) | tar -xf - -C "$rootfs$artifact"
    modelstore=$gg/packages/artifacts-unarchived/variant.DLR.ImageClassification.ModelStore/2.1.0
    model_folder=$modelstore/DLR-resnet50-$machine-cpu-ImageClassification
    rm -rf "$rootfs$modelstore"
    mkdir -p "$rootfs$modelstore"
    cp -R "$model" "$rootfs$model_folder"

    # 3. The recipe's Install step, as the nucleus runs it: the manifest's Setenv and Script
    #    with the recipe variables filled in, from the component's work directory.
    cd "$repo"
    "$repo/.venv/bin/python" - "$machine" "$artifact" "$work_classifier" "$modelstore" \
        > "$rootfs/tmp/ggic-lifecycle.sh" <<'PY'
import shlex
import sys
from pathlib import Path

import yaml

machine, artifact, work, modelstore = sys.argv[1:]
label = {"aarch64": "aarch64", "armv7l": "arm"}[machine]
recipe = yaml.safe_load(Path("recipes/com.custom.ImageClassifier.yaml").read_text())
manifest = next(m for m in recipe["Manifests"] if m["Platform"]["architecture"] == label)
values = {
    "{artifacts:decompressedPath}": str(Path(artifact).parent),
    "{work:path}": work,
    "{variant.DLR.ImageClassification.ModelStore:artifacts:decompressedPath}": modelstore,
    # variant.DLR's default, relative to the work directory as on a device
    "{variant.DLR:configuration:/MLRootPath}": "../variant.DLR/greengrass_ml",
}


def fill(text: str) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


for key, value in manifest["Lifecycle"]["Setenv"].items():
    print(f"export {key}={shlex.quote(fill(value))}")
print(f"install() {{ {fill(manifest['Lifecycle']['Install']['Script'])}; }}")
run = shlex.split(fill(manifest["Lifecycle"]["Run"]["Script"]))  # exec PYTHON -m ggic classifier
print(f"run_python={shlex.quote(run[1])}")
PY
    cat "$rootfs/tmp/ggic-lifecycle.sh"
    started=$(now)
    chroot "$rootfs" sh -c ". /tmp/ggic-lifecycle.sh && cd '$work_classifier' && install"
    echo "Install step: $(took "$started")"

    # 4. The Run command's interpreter, with the manifest's environment, on the images:
    #    `ggic classify` (the component's pipeline in one process; no IPC in the chroot).
    mkdir -p "$rootfs/tmp/images"
    rm -f "$rootfs/tmp/images/"*
    for image in "$@"; do cp "$image" "$rootfs/tmp/images/"; done
    started=$(now)
    chroot "$rootfs" sh -c ". /tmp/ggic-lifecycle.sh && cd '$work_classifier' &&
        \$run_python -m ggic classify --model-dir \"\$GGIC_DEFAULT_MODEL_DIR\" --score-threshold 0 \
        $classify_args /tmp/images/*"
    echo "classify (load, warm-up, $# images): $(took "$started")"
}

case $command in
    rootfs) make_rootfs ;;
    run) run_classifier "$@" ;;
    shell)
        need_root; register_binfmt; mount_special; trap umount_special EXIT INT TERM
        chroot "$rootfs" /bin/bash ;;
    *) sed -n '2,25p' "$0" >&2; exit 2 ;;
esac
