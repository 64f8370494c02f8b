#!/usr/bin/env sh
# Build python-echo.wasm from app.py with componentize-py, against contract 0.2 (wit/v0.2.0).
#
#   examples/plugins/python-echo/build.sh [OUT_DIR]
#
# Creates a virtualenv under the repository's target/ on first use (needs python3 >= 3.10
# with venv), installs the pinned componentize-py into it, and writes python-echo.wasm into
# OUT_DIR (default: this directory). Install it like any plugin:
#   cp python-echo.wasm plugin.toml -> PLUGINS_DIR/python-echo.wasm, PLUGINS_DIR/python-echo.toml
set -eu

COMPONENTIZE_PY_VERSION=0.25.1

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$here}
venv="${CARGO_TARGET_DIR:-$root/target}/componentize-py-$COMPONENTIZE_PY_VERSION"

if [ ! -x "$venv/bin/componentize-py" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

mkdir -p "$out"
# Write beside the destination, then rename: a watched plugins directory never sees a
# half-written component.
"$venv/bin/componentize-py" -d "$root/wit/v0.2.0" -w feature componentize -p "$here" app -o "$out/python-echo.wasm.partial"
mv "$out/python-echo.wasm.partial" "$out/python-echo.wasm"
echo "built $out/python-echo.wasm"
