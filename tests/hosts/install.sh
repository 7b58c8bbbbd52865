#!/usr/bin/env bash
# Installs the host applications the host tests run inside (root; Debian 12 or 13).
# Each host's own install.sh (tests/hosts/<host>/install.sh) does its part; all are idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" != 0 ]; then
    echo "tests/hosts/install.sh installs Debian packages and needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/paintbridge-apt-updated
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +360 2>/dev/null)" ]; then
    apt-get update -qq
    mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
for script in "$here"/*/install.sh; do
    [ -f "$script" ] || continue
    echo "==> $(basename "$(dirname "$script")"): $script"
    bash "$script"
done
