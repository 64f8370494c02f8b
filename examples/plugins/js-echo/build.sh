#!/usr/bin/env sh
# Build js-echo.wasm from app.js with jco (QuickJS backend), against contract 0.2.
#
#   examples/plugins/js-echo/build.sh [OUT_DIR]
#
# Needs node (^20.19 or >= 22.12, for jco's bundler and minifier) and npm. On first use,
# and whenever package-lock.json changes, installs the pinned jco with `npm ci` into a
# directory under the repository's target/ (CARGO_TARGET_DIR if set; nothing is installed
# in this directory), then writes js-echo.wasm into OUT_DIR (default: this directory).
# Install it like any plugin:
#   cp js-echo.wasm plugin.toml -> PLUGINS_DIR/js-echo.wasm, PLUGINS_DIR/js-echo.toml
#
# WIT_DIR and WIT_WORLD choose the contract: by default the repository's wit/v0.2.0 (the
# version app.js imports) and the `feature` world.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$here}
WIT_DIR=${WIT_DIR:-$root/wit/v0.2.0}
WIT_WORLD=${WIT_WORLD:-feature}

node -e 'const [a, b] = process.versions.node.split(".").map(Number);
    process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)' || {
    echo "js-echo: Node.js $(node --version) is too old for jco 1.35: need ^20.19 or >= 22.12" >&2
    exit 1
}
JCO_VERSION=$(node -p 'require(process.argv[1]).devDependencies["@bytecodealliance/jco"]' "$here/package.json")
tools="${CARGO_TARGET_DIR:-$root/target}/jco-$JCO_VERSION"

# node_modules lives beside a copy of package.json and package-lock.json; installed.json is
# the lock it was installed from, written only after `npm ci` succeeded, so a changed lock
# (or an interrupted install) reinstalls.
if [ ! -x "$tools/node_modules/.bin/jco" ] || ! cmp -s "$here/package-lock.json" "$tools/installed.json"; then
    mkdir -p "$tools"
    rm -f "$tools/installed.json"
    cp "$here/package.json" "$here/package-lock.json" "$tools/"
    (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$here/package-lock.json" "$tools/installed.json"
fi

mkdir -p "$out"
# Write beside the destination, then rename: a watched plugins directory never sees a
# half-written component.
"$tools/node_modules/.bin/jco" componentize "$here/app.js" \
    --wit "$WIT_DIR" --world-name "$WIT_WORLD" \
    --backend qjs --backend-qjs-disable-async --backend-qjs-stub-wasi \
    -o "$out/js-echo.wasm.partial"
mv "$out/js-echo.wasm.partial" "$out/js-echo.wasm"
echo "built $out/js-echo.wasm"
