#!/usr/bin/env bash
# Installs Blender 4.5 LTS and 5.0 as the `bpy` module (PyPI wheels, CPython 3.11 only), each in
# its own venv under <repo>/.hosts/ (the tests run on both), plus the system libraries the wheels
# load. Root, Debian 12 or 13; idempotent and quick when already installed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)

libs="libgl1 libglx0 libx11-6 libxi6 libxkbcommon0 libxrender1 libxfixes3 libxext6 libsm6 libice6"
missing=""
for pkg in $libs; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "blender: apt-get install$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
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

# install_bpy VENV REQUIREMENT...: a fresh venv with these requirements, unless it is there
install_bpy() {
    local venv=$1
    shift
    local stamp=$venv/.paintbridge-installed
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$*" ] && [ -x "$venv/bin/python" ] \
        && "$venv/bin/python" -c "import bpy" >/dev/null 2>&1; then
        echo "blender: $* already in $venv"
        return
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
    echo "blender: pip install $* (a 370 MB wheel) into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
    "$venv/bin/python" -c "import bpy; print('blender: bpy', bpy.app.version_string)"
    echo "$*" > "$stamp"
}

install_bpy "$repo/.hosts/blender-venv" "bpy==4.5.*"
# bpy 5.0.1 breaks with numpy 2 (its wheel says numpy<2 too; named here so no resolver drifts)
install_bpy "$repo/.hosts/blender50-venv" "bpy==5.0.*" "numpy<2"
