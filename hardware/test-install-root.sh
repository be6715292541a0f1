#!/usr/bin/env bash
# `make test-pi-install`: prove hardware/install-pi.sh in a fresh Debian bookworm root made with
# debootstrap, arm64 under qemu-user (binfmt_misc) where this machine allows it, amd64 otherwise
# (the reason printed). Needs root (debootstrap, chroot, mounts) and Debian's package mirror.
#
#   sudo hardware/test-install-root.sh [--arch arm64|amd64] [--cached-only] [--warm]
#
# The debootstrap root is made once and kept in .cache/pi-root/bookworm-ARCH/base (gitignored);
# each run copies it to .cache/pi-root/bookworm-ARCH/root, puts the agent's wheel (built here
# from agent/) and a wheelhouse for ARCH into it, mounts /proc, /sys and /dev, and runs
# scripts/pi_root_check.py on the host: a Mosquitto on a free loopback port, the provisioning
# answer behind a one-time token, install-pi.sh in the root (a first install, then an upgrade
# over the older script's layout), and the installed agent playing a signed command to its file
# sink. --warm reuses the root of the last run that passed (its packages already installed:
# minutes instead of a quarter of an hour under qemu; install-pi.sh then re-provisions and
# upgrades it). --cached-only exits 77 when no such root is cached (the e2e test then skips).
# LOA_DEBIAN_MIRROR overrides the mirror (default: the host's, else deb.debian.org).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CACHE="${LOA_PI_CACHE:-$REPO/.cache/pi-root}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
SUITE=bookworm
ARCH=""
CACHED_ONLY=0
WARM=0
T0=$(date +%s)

while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH="$2"; shift 2 ;;
        --cached-only) CACHED_ONLY=1; shift ;;
        --warm) WARM=1; shift ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

step() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap, chroot and mounts need it)" >&2; exit 1; }
[ -x "$PY" ] || { echo "no $PY: run make venv first" >&2; exit 1; }
if [ "$CACHED_ONLY" -eq 1 ]; then   # before anything is installed or mounted on this machine
    want=base/.loa-base-ok; what="$SUITE root"
    [ "$WARM" -eq 0 ] || { want=root/.loa-passed; what="$SUITE root of a passed run"; }
    if ! ls "$CACHE"/"$SUITE"-*/$want >/dev/null 2>&1; then
        echo "no cached $what in $CACHE: run make test-pi-install once"; exit 77
    fi
fi

mirror() {
    if [ -n "${LOA_DEBIAN_MIRROR:-}" ]; then echo "$LOA_DEBIAN_MIRROR"; return; fi
    local uri
    uri="$(grep -hs -m1 -E '^URIs: .*/debian/?$' /etc/apt/sources.list.d/*.sources | awk '{print $2}')"
    [ -n "$uri" ] || uri="$(grep -hs -m1 -E '^deb .*/debian/? ' /etc/apt/sources.list | awk '{print $2}')"
    echo "${uri:-http://deb.debian.org/debian}"
}

need() {  # need COMMAND PACKAGE...: install Debian packages when a command is missing
    local cmd="$1"; shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    step "installing $*"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

# --- arm64 under qemu-user, if this machine can -----------------------------------------------
WHY_NOT_ARM64=""
arm64_possible() {
    if [ "$(uname -m)" = aarch64 ]; then return 0; fi
    if ! need qemu-aarch64-static qemu-user-static binfmt-support; then
        WHY_NOT_ARM64="qemu-user-static could not be installed from the package mirror"
        return 1
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/register ] \
            && ! mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null; then
        WHY_NOT_ARM64="binfmt_misc is not mounted and cannot be (mount -t binfmt_misc failed:"
        WHY_NOT_ARM64+=" no CAP_SYS_ADMIN in this container, or a kernel without"
        WHY_NOT_ARM64+=" CONFIG_BINFMT_MISC), so the kernel cannot hand arm64 programs to qemu"
        return 1
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        WHY_NOT_ARM64="the qemu-aarch64 binfmt handler could not be registered"
        return 1
    fi
    if ! grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
        # without the F (fix-binary) flag the interpreter is looked up inside the chroot
        INTERP_COPY="$(sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-aarch64)"
    fi
    return 0
}
INTERP_COPY=""
if [ -z "$ARCH" ]; then
    if arm64_possible; then ARCH=arm64; else ARCH=amd64; fi
elif [ "$ARCH" = arm64 ] && ! arm64_possible; then
    echo "arm64 is not possible here: $WHY_NOT_ARM64" >&2; exit 1
fi
if [ "$ARCH" = arm64 ]; then
    PYARCH=aarch64
    step "target: Debian $SUITE arm64 under qemu-user (binfmt_misc)"
else
    PYARCH=x86_64
    [ -z "$WHY_NOT_ARM64" ] || echo "NOT arm64: $WHY_NOT_ARM64; running in an amd64 root instead"
    step "target: Debian $SUITE amd64"
fi

DIR="$CACHE/$SUITE-$ARCH"
BASE="$DIR/base"
WORKROOT="$DIR/root"

# --- the base root, made once ------------------------------------------------------------------
if [ ! -f "$BASE/.loa-base-ok" ]; then
    if [ "$CACHED_ONLY" -eq 1 ]; then
        echo "no cached $SUITE-$ARCH root in $DIR: run make test-pi-install once"; exit 77
    fi
    need debootstrap debootstrap
    mkdir -p "$DIR"
    if [ ! -x "$BASE/usr/bin/apt-get" ]; then
        rm -rf "$BASE"
        step "debootstrap $SUITE $ARCH (minbase) from $(mirror)"
        debootstrap --arch="$ARCH" --variant=minbase "$SUITE" "$BASE" "$(mirror)" \
            > "$DIR/debootstrap.log" 2>&1 \
            || { tail -20 "$DIR/debootstrap.log"; echo "debootstrap failed" >&2; exit 1; }
    fi
    [ -z "$INTERP_COPY" ] || install -D "$INTERP_COPY" "$BASE$INTERP_COPY"
    step "base: systemd (as on Raspberry Pi OS), no daemons started from the chroot"
    # policy-rc.d: package scripts must not start chrony & co. on the host from the chroot
    printf '#!/bin/sh\nexit 101\n' > "$BASE/usr/sbin/policy-rc.d"
    chmod 0755 "$BASE/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$BASE/etc/resolv.conf"
    chroot "$BASE" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends systemd-sysv' \
        > "$DIR/base.log" 2>&1 || { tail -20 "$DIR/base.log"; exit 1; }
    chroot "$BASE" /usr/bin/apt-get clean
    touch "$BASE/.loa-base-ok"
fi
[ -z "$INTERP_COPY" ] || install -D "$INTERP_COPY" "$BASE$INTERP_COPY"
got="$(chroot "$BASE" /usr/bin/uname -m)"
step "base root runs: uname -m in it says $got"

# --- a fresh copy of it (or the last passed run's), with the agent's wheel and wheelhouse -----
MOUNTS=()
cleanup() {
    local i
    for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do
        umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" || true
    done
}
trap cleanup EXIT
if [ -d "$WORKROOT" ]; then
    # a run killed half way may have left its mounts
    for m in dev/pts dev sys proc; do
        if mountpoint -q "$WORKROOT/$m"; then umount -l "$WORKROOT/$m"; fi
    done
fi
if [ "$WARM" -eq 1 ] && [ -f "$WORKROOT/.loa-passed" ]; then
    step "warm root: the last passed run's (install-pi.sh re-provisions and upgrades it)"
    rm -f "$WORKROOT/.loa-passed"
    rm -rf "$WORKROOT/tmp/loa-install"
elif [ "$WARM" -eq 1 ] && [ "$CACHED_ONLY" -eq 1 ]; then
    echo "no root of a passed run in $WORKROOT: run make test-pi-install once"; exit 77
else
    rm -rf "$WORKROOT"
    step "fresh root: a copy of the base"
    cp -a "$BASE" "$WORKROOT"
fi
cp /etc/resolv.conf "$WORKROOT/etc/resolv.conf"

step "the agent's wheel (built from agent/) and its wheelhouse for $PYARCH"
BUILD="$(mktemp -d)"
cp -r "$REPO/agent" "$REPO/device_agent" "$BUILD/"
rm -rf "$BUILD/device_agent/__pycache__"
HOUSE="$CACHE/wheelhouse-$PYARCH"
if [ ! -f "$HOUSE/.fetched" ] || [ "$REPO/agent/pyproject.toml" -nt "$HOUSE/.fetched" ]; then
    rm -rf "$HOUSE"
    "$PY" "$REPO/scripts/agent_wheelhouse.py" --arch "$PYARCH" --dest "$HOUSE" 2>&1 \
        | grep -v '^WARNING: Location' || true
    ls "$HOUSE"/cryptography-*.whl >/dev/null 2>&1 \
        || { echo "no $PYARCH wheels of the agent's dependencies could be fetched" >&2; exit 1; }
    touch "$HOUSE/.fetched"
fi
"$PY" -m pip wheel -q --no-deps --no-index --find-links "$HOUSE" --wheel-dir "$BUILD/dist" \
    "$BUILD/agent" > "$DIR/wheel.log" 2>&1 || { cat "$DIR/wheel.log"; exit 1; }
INSTALL="$WORKROOT/tmp/loa-install"
mkdir -p "$INSTALL/dist"
cp -r "$REPO/hardware" "$INSTALL/"
rm -rf "$INSTALL/hardware/mosquitto"
cp -r "$HOUSE" "$INSTALL/wheelhouse"
cp "$BUILD"/dist/loaphuong_agent-*.whl "$INSTALL/dist/"
WHEEL_IN_ROOT="/tmp/loa-install/dist/$(basename "$BUILD"/dist/loaphuong_agent-*.whl)"
rm -rf "$BUILD"

step "mounts: /proc, /sys, /dev, /dev/pts in the root"
mount -t proc proc "$WORKROOT/proc"; MOUNTS+=("$WORKROOT/proc")
mount -t sysfs sysfs "$WORKROOT/sys"; MOUNTS+=("$WORKROOT/sys")
mount --bind /dev "$WORKROOT/dev"; MOUNTS+=("$WORKROOT/dev")
mount --bind /dev/pts "$WORKROOT/dev/pts"; MOUNTS+=("$WORKROOT/dev/pts")

step "host side: scripts/pi_root_check.py"
: > "$DIR/install.log"
set +e
"$PY" "$REPO/scripts/pi_root_check.py" --root "$WORKROOT" --wheel "$WHEEL_IN_ROOT" \
    --wheelhouse /tmp/loa-install/wheelhouse --log "$DIR/install.log" --machine "$PYARCH"
rc=$?
set -e
[ "$rc" -ne 0 ] || touch "$WORKROOT/.loa-passed"
step "finished ($ARCH${WHY_NOT_ARM64:+; not arm64: $WHY_NOT_ARM64}), exit $rc;" \
    "install-pi.sh's output: $DIR/install.log"
exit $rc
