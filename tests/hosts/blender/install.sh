#!/usr/bin/env bash
# Installs Blender as the `bpy` module (PyPI wheel, CPython 3.11 only) into its own venv under
# <repo>/.hosts/, plus the system libraries the wheel loads. Root, Debian 12 or 13; idempotent
# and quick when already installed. PAINTBRIDGE_BPY overrides the version pin ("bpy==5.0.*") and
# PAINTBRIDGE_BPY_VENV the folder (the tests take PAINTBRIDGE_BLENDER_PYTHON=<venv>/bin/python).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
venv=${PAINTBRIDGE_BPY_VENV:-$repo/.hosts/blender-venv}
pin=${PAINTBRIDGE_BPY:-bpy==4.5.*}
stamp=$venv/.paintbridge-installed

libs="libgl1 libglx0 libx11-6 libxi6 libxkbcommon0 libxrender1 libxfixes3 libxext6 libsm6 libice6"
missing=""
for pkg in $libs; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "blender: apt-get install$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pin" ] && [ -x "$venv/bin/python" ] \
    && "$venv/bin/python" -c "import bpy" >/dev/null 2>&1; then
    echo "blender: $pin already in $venv"
    exit 0
fi

# The bpy wheels are cp311 only. Debian 12's python3 is 3.11; Debian 13 machines carry
# bookworm's python3.11 packages. Prefer the system interpreter over shims (pyenv and the like).
python=""
for candidate in /usr/bin/python3.11 /usr/local/bin/python3.11 "$(command -v python3.11 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
    echo "blender: no python3.11; trying apt-get install python3.11 python3.11-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3.11 python3.11-venv || true
    python=$(command -v python3.11 || true)
fi
if [ -z "$python" ]; then
    echo "blender: the bpy wheel needs CPython 3.11 and none could be installed" >&2
    exit 1
fi

rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
if ! "$python" -m venv "$venv" 2>/dev/null; then
    # No ensurepip (Debian without python3.11-venv): try to add it, else borrow a pip.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3.11-venv >/dev/null 2>&1 || true
    rm -rf "$venv"
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"
        "$python" -m venv --without-pip "$venv"
        "$repo/.venv/bin/python" -m pip --python "$venv/bin/python" install -q pip
    fi
fi
echo "blender: pip install $pin (a 370 MB wheel) into $venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$pin"
# bpy 5.0 needs numpy < 2; pip resolves that from the wheel's own requirements.
"$venv/bin/python" -c "import bpy; print('blender: bpy', bpy.app.version_string)"
echo "$pin" > "$stamp"
