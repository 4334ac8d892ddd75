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
#            armhf: /etc/pip.conf names the piwheels stand-in (below) as Raspberry Pi OS names
#            piwheels, and the classifier's work directory is a tmpfs (32-bit readdir, README)
#        scripts/arm-emulation.sh --arch armhf awscrt-wheel
#            (once) the piwheels stand-in: build PyPI's awscrt sdist into an armv7l wheel under
#            emulation with Debian's compiler, in <cache>/piwheels/armv7l/simple/awscrt/
#        scripts/arm-emulation.sh [--arch ...] shell   a shell in the root filesystem
# environment:
#   GGIC_ARM_CACHE   where root filesystems are cached (default: .ggic/arm-rootfs in the
#                    repository); one folder per architecture
#   GGIC_LIBDLR      default for --libdlr (else $GGIC_ARM_CACHE/libdlr/<machine>/libdlr.so)
#   DEBIAN_MIRROR    default: the first Debian mirror apt uses here, else deb.debian.org
#
# Nothing here builds DLR: --libdlr takes a library built elsewhere (README, "Raspberry Pi and
# Jetson"). The rootfs's apt installs Debian packages only; the Install step's pip installs
# awsiotsdk from PyPI into the component's venv as on a device (on armhf, awscrt from the
# piwheels stand-in, itself built from PyPI's sdist).
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
piwheels=$cache/piwheels/$machine      # armhf: the piwheels stand-in (awscrt-wheel)
build_rootfs=$cache/$arch-build        # armhf: where awscrt-wheel compiles

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

piwheels_in_rootfs=/var/cache/ggic-piwheels-stand-in

cleanup() {
    if mountpoint -q "$rootfs$work_classifier" 2>/dev/null; then
        umount "$rootfs$work_classifier" || umount -l "$rootfs$work_classifier"
    fi
    umount_special
}

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
    if [ "$machine" = armv7l ] && ! ls "$piwheels/simple/awscrt/"awscrt-*.whl > /dev/null 2>&1
    then
        echo "no awscrt wheel for armv7l in $piwheels (PyPI has none; Raspberry Pi OS gets it" \
             "from piwheels): run '$0 --arch armhf awscrt-wheel' first" >&2
        exit 2
    fi
    register_binfmt
    mount_special
    trap cleanup EXIT INT TERM
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
    # pip in the chroot trusts what the host trusts (a proxy's CA, if the host has one)
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/host-ca-certificates.crt"
    PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt
    export PIP_CERT REQUESTS_CA_BUNDLE=$PIP_CERT SSL_CERT_FILE=$PIP_CERT
    unset PIP_FIND_LINKS PIP_CONSTRAINT PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONFIG_FILE \
        2>/dev/null || true
    if [ "$machine" = armv7l ]; then
        # Raspberry Pi OS ships /etc/pip.conf with "extra-index-url=https://www.piwheels.org/simple";
        # here the same file names the local stand-in, a copy of <cache>/piwheels/armv7l/simple
        piwheels_index
        rm -rf "$rootfs$piwheels_in_rootfs"
        mkdir -p "$rootfs$piwheels_in_rootfs"
        cp -R "$piwheels/simple" "$rootfs$piwheels_in_rootfs/"
        printf '[global]\nextra-index-url=file://%s/simple\n' "$piwheels_in_rootfs" \
            > "$rootfs/etc/pip.conf"
        echo "/etc/pip.conf (piwheels stand-in):"; sed 's/^/    /' "$rootfs/etc/pip.conf"
    fi

    # 1. variant.DLR, laid out as its installer lays it out on a Raspberry Pi/Jetson:
    #    {MLRootPath}/greengrass_ml_dlr_venv, a venv over the system's python3 with the system's
    #    site packages, holding the dlr package, and libdlr.so at <venv>/dlr/libdlr.so (where
    #    the dlr 1.6.0 wheel's data_files put it).
    started=$(now)
    ml_root=$work_dlr/greengrass_ml
    dlr_venv=$ml_root/greengrass_ml_dlr_venv
    rm -rf "$rootfs$work_dlr" "$rootfs$work_classifier"
    mkdir -p "$rootfs$ml_root" "$rootfs$work_classifier"
    if [ "$machine" = armv7l ]; then
        # An emulation artefact, worked around here only: a 32-bit process under QEMU on a
        # 64-bit kernel gets ext4's 64-bit directory cookies, which its 32-bit readdir (DLR's
        # model-folder scan) cannot hold (EOVERFLOW: "Unable to determine backend from path").
        # A real 32-bit kernel hands out 32-bit cookies. The classifier's work directory (its
        # venv and the model the Install step copies there) goes on a tmpfs, whose cookies fit.
        mount -t tmpfs -o size=512m,mode=0755 ggic-work "$rootfs$work_classifier"
        echo "$work_classifier on a tmpfs (32-bit readdir under QEMU; see README)"
    fi
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
    # which awscrt the Install step's pip chose (armv7l: the piwheels stand-in's)
    cat > "$rootfs/tmp/ggic-awscrt.py" <<'PY'
import importlib.metadata as metadata
import os

dist = metadata.distribution("awscrt")
tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")]
where = os.path.dirname(str(dist.locate_file("awscrt")))
print(f"awscrt {dist.version} ({', '.join(tags)}) in {where}; "
      f"awsiotsdk {metadata.version('awsiotsdk')}")
PY
    chroot "$rootfs" sh -c ". /tmp/ggic-lifecycle.sh && \$run_python /tmp/ggic-awscrt.py"

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

# A stand-in for piwheels (https://www.piwheels.org), which Raspberry Pi OS's /etc/pip.conf
# names as pip's extra index: PyPI has no armv7l wheel of awscrt (awsiotsdk's one compiled
# dependency), piwheels has one that it built from PyPI's sdist on a Raspberry Pi. This builds
# it the same way, once: PyPI's awscrt sdist (the version the Install step's awsiotsdk pin
# resolves to), compiled natively in a copy of the root filesystem ($arch-build, with Debian's
# cmake, gcc, libssl-dev) under emulation, linked to Debian's libcrypto instead of building
# aws-lc (AWS_CRT_BUILD_USE_SYSTEM_LIBCRYPTO=1). The wheel goes to an index laid out like
# piwheels' (<cache>/piwheels/<machine>/simple/awscrt/), which `run` offers to pip exactly as
# Raspberry Pi OS offers piwheels.
# the Install step's pin, read from the script that pins it
awsiotsdk_pin=$(sed -n "s/.*'\(awsiotsdk[^']*\)'.*/\1/p" "$repo/scripts/component-install.sh" \
    | head -n 1)

build_awscrt_wheel() {
    need_root
    if [ "$machine" != armv7l ]; then
        echo "awscrt-wheel is for --arch armhf: PyPI has awscrt wheels for $machine" >&2; exit 2
    fi
    if [ ! -f "$rootfs/.ggic-ready" ]; then
        echo "no root filesystem at $rootfs: run '$0 --arch $arch rootfs' first" >&2; exit 1
    fi
    if ls "$piwheels/simple/awscrt/"awscrt-*.whl > /dev/null 2>&1; then
        echo "piwheels stand-in $piwheels has $(cd "$piwheels/simple/awscrt" && ls awscrt-*.whl)"
        return
    fi
    register_binfmt
    saved_rootfs=$rootfs
    rootfs=$build_rootfs
    # (awscrt's CMake project needs a C++ compiler too, though it compiles C only)
    build_packages="cmake make gcc g++ libc6-dev libssl-dev python3-dev python3-pip"
    if [ ! -f "$rootfs/.ggic-ready" ]; then
        started=$(now)
        rm -rf "$rootfs"
        mkdir -p "$rootfs"
        (cd "$saved_rootfs" && tar --one-file-system --exclude=./greengrass -cf - .) \
            | tar -xf - -C "$rootfs"
        echo "copied $saved_rootfs to $rootfs: $(took "$started")"
    fi
    mount_special
    trap umount_special EXIT INT TERM
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
    if [ "$(cat "$rootfs/.ggic-build-ready" 2>/dev/null)" != "$build_packages" ]; then
        started=$(now)
        chroot "$rootfs" sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends $build_packages" \
            > "$cache/$arch-build-apt.log" 2>&1 || {
            echo "apt-get in $rootfs failed; see $cache/$arch-build-apt.log" >&2; exit 1; }
        echo "$build_packages" > "$rootfs/.ggic-build-ready"
        echo "apt-get install $build_packages in $rootfs: $(took "$started")"
    fi
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/host-ca-certificates.crt"
    PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt
    export PIP_CERT REQUESTS_CA_BUNDLE=$PIP_CERT SSL_CERT_FILE=$PIP_CERT
    unset PIP_FIND_LINKS PIP_CONSTRAINT PIP_EXTRA_INDEX_URL PIP_INDEX_URL 2>/dev/null || true
    rm -rf "$rootfs/tmp/awscrt-build"
    mkdir -p "$rootfs/tmp/awscrt-build"
    # the awscrt version the pin resolves to: awsiotsdk pins awscrt exactly
    chroot "$rootfs" python3 -m pip download --disable-pip-version-check -q --no-deps \
        -d /tmp/awscrt-build "$awsiotsdk_pin"
    version=$(chroot "$rootfs" python3 -c 'import glob, re, zipfile
wheel = glob.glob("/tmp/awscrt-build/awsiotsdk-*.whl")[0]
with zipfile.ZipFile(wheel) as archive:
    meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    text = archive.read(meta).decode()
print(re.search(r"^Requires-Dist: awscrt==([0-9][^ ;\n]*)", text, re.M).group(1))')
    echo "$awsiotsdk_pin resolves to $(cd "$rootfs/tmp/awscrt-build" && ls awsiotsdk-*.whl)," \
         "which needs awscrt==$version"
    started=$(now)
    chroot "$rootfs" env AWS_CRT_BUILD_USE_SYSTEM_LIBCRYPTO=1 CMAKE_BUILD_PARALLEL_LEVEL=2 \
        nice -n 19 python3 -m pip wheel --disable-pip-version-check --no-deps \
        --no-binary awscrt -w /tmp/awscrt-build/wheel "awscrt==$version" \
        > "$cache/awscrt-$version-$machine-build.log" 2>&1 || {
        echo "building awscrt $version failed; see $cache/awscrt-$version-$machine-build.log" >&2
        exit 1; }
    echo "awscrt $version wheel built from PyPI's sdist under emulation: $(took "$started")"
    mkdir -p "$piwheels/simple/awscrt"
    cp "$rootfs"/tmp/awscrt-build/wheel/awscrt-*.whl "$piwheels/simple/awscrt/"
    rm -rf "$rootfs/tmp/awscrt-build"
    piwheels_index
    ls -l "$piwheels/simple/awscrt/"
}

# The project page of a PEP 503 "simple" index, as piwheels serves it (pip reads index.html
# from a file: index's project folder): a link per wheel, with its sha256.
piwheels_index() {
    (cd "$piwheels/simple/awscrt" && {
        echo '<!DOCTYPE html><html><body>'
        for wheel in awscrt-*.whl; do
            echo "<a href=\"$wheel#sha256=$(sha256sum "$wheel" | cut -d' ' -f1)\">$wheel</a><br>"
        done
        echo '</body></html>'
    } > index.html)
}

case $command in
    rootfs) make_rootfs ;;
    awscrt-wheel) build_awscrt_wheel ;;
    run) run_classifier "$@" ;;
    shell)
        need_root; register_binfmt; mount_special; trap umount_special EXIT INT TERM
        chroot "$rootfs" /bin/bash ;;
    *) sed -n '2,31p' "$0" >&2; exit 2 ;;
esac
