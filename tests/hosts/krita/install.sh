#!/usr/bin/env bash
# Installs Krita for the Krita host tests (root; Debian 12 or 13; idempotent).
# Debian's krita has Python scripting built in; python3-pyqt5 is only recommended, so it is
# named; xvfb runs the GUI test.
set -euo pipefail
packages=(krita python3-pyqt5 xvfb)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "krita: already installed ($(dpkg-query -W -f='${Version}' krita))"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "tests/hosts/krita/install.sh needs root to install: ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "krita: installed $(dpkg-query -W -f='${Version}' krita)"
