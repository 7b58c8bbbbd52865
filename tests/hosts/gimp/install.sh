#!/usr/bin/env bash
# GIMP 3 for the GIMP host tests (root; Debian 12 or 13). Idempotent and quick when installed.
#   Debian 13+: Debian's `gimp` package (GIMP 3 with Python 3 plug-ins), plain apt.
#   Debian 12:  its GIMP 2.10 has no Python and GIMP 3 needs trixie's glibc, so GIMP 3 goes into
#               a minimal trixie chroot at <repo>/.hosts/gimp-trixie (git-ignored, ~730 MB).
# The tests (tests/hosts/gimp/gimphost.py) use the system GIMP 3 if there is one, else the chroot.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
root=$repo/.hosts/gimp-trixie
mirror=${PAINTBRIDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
export DEBIAN_FRONTEND=noninteractive

apt_install() {
    # Waits for another apt/dpkg (other host installs may run at the same time); updates the
    # package lists once if the package is unknown (this script may run on its own).
    local apt=(apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends)
    "${apt[@]}" "$@" >/dev/null 2>&1 || {
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        "${apt[@]}" "$@" >/dev/null
    }
}

# The GUI tests (test_gimp3_ui.py) run GIMP's GUI on Xvfb and press keys with xdotool, from
# this side of the chroot (an Xvfb display is an abstract socket the chroot reaches too).
if ! command -v xdotool >/dev/null 2>&1 || ! command -v Xvfb >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "gimp: installing xdotool and xvfb needs root" >&2
        exit 1
    fi
    echo "gimp: apt-get install xdotool xvfb"
    apt_install xdotool xvfb
fi

if command -v gimp-console-3.0 >/dev/null 2>&1; then
    echo "gimp: system GIMP 3 present ($(command -v gimp-console-3.0))"
    exit 0
fi
if [ -f "$root/.paintbridge-ready" ] && [ -x "$root/usr/bin/gimp-console-3.0" ]; then
    echo "gimp: GIMP 3 present in the chroot $root"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "gimp: installing GIMP 3 needs root" >&2
    exit 1
fi

major=$(cut -d. -f1 /etc/debian_version 2>/dev/null || echo 0)
if ! [[ "$major" =~ ^[0-9]+$ ]] || [ "$major" -ge 13 ]; then
    # Debian 13+ (testing/sid's debian_version reads like "trixie/sid"): GIMP 3 is Debian's gimp.
    echo "gimp: apt-get install gimp"
    apt_install gimp
    if command -v gimp-console-3.0 >/dev/null 2>&1; then
        exit 0
    fi
    echo "gimp: this Debian's gimp is not GIMP 3; using a trixie chroot instead" >&2
fi

echo "gimp: building a Debian 13 (trixie) chroot for GIMP 3 at $root"
if ! command -v debootstrap >/dev/null 2>&1; then
    apt_install debootstrap
fi
# Build beside the final folder and move it in place only when complete, so an interrupted run
# leaves nothing that looks installed. The chroot mounts nothing (no /proc, no /dev binds).
partial=$root.partial
rm -rf "$partial"
mkdir -p "$(dirname "$root")"
debootstrap --variant=minbase trixie "$partial" "$mirror" >"$partial.log" 2>&1 || {
    tail -20 "$partial.log" >&2
    exit 1
}
cp /etc/resolv.conf "$partial/etc/resolv.conf"
{
    chroot "$partial" apt-get update -qq &&
        chroot "$partial" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends gimp &&
        chroot "$partial" apt-get clean
} >>"$partial.log" 2>&1 || {
    tail -20 "$partial.log" >&2
    exit 1
}
chroot "$partial" gimp-console-3.0 --version
touch "$partial/.paintbridge-ready"
rm -rf "$root" "$partial.log"
mv "$partial" "$root"
echo "gimp: GIMP 3 ready in $root"
