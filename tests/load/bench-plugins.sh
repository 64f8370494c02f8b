#!/usr/bin/env bash
# Plugin overhead (issue 3): the same server, the same sessions and messages, routed
# natively (each session messages its own full JID) and through the echo example plugin
# (each session messages echo.localhost, which sends the body back). Alternates the two
# ROUNDS times so drift hits both alike, then prints the runtime's own per-call latency
# histogram (`plugin list`) and runs the in-process handle-stanza micro-benchmark.
#
#   tests/load/bench-plugins.sh           # full run
#   QUICK=1 tests/load/bench-plugins.sh   # small numbers, to check the script
#   MICRO=0 tests/load/bench-plugins.sh   # without the in-process micro-benchmark
#   SERVER=... LOAD=...                   # other builds than target/release's
#
# Needs: cargo build --release -p poolxmpp -p poolxmpp-load. Listens on 127.0.0.1 only.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LOAD="${LOAD:-$ROOT/target/release/poolxmpp-load}"
SERVER="${SERVER:-$ROOT/target/release/poolxmpp}"
if [ -n "${QUICK:-}" ]; then SESSIONS=20 MSGS=100 ROUNDS=1 CALLS=10000; else SESSIONS=100 MSGS=1000 ROUNDS=3 CALLS=200000; fi

DIR=$(mktemp -d /tmp/poolxmpp-plugin-bench.XXXXXX)
trap 'kill "${PID:-0}" 2>/dev/null || true' EXIT
echo "building the example plugins" >&2
"$SERVER" plugin build --examples --source "$ROOT" --out "$DIR/all" >&2
mkdir -p "$DIR/plugins"
cp "$DIR/all/echo.toml" "$DIR/all/echo.wasm" "$DIR/plugins/"
cat >"$DIR/poolxmpp.toml" <<TOML
data_dir = "$DIR/data"
[[domain]]
name = "localhost"
[listen]
starttls = ["127.0.0.1:16322"]
direct_tls = []
[features]
registration = true
[plugins]
dir = "$DIR/plugins"
[log]
level = "warn"
TOML
"$SERVER" serve --config "$DIR/poolxmpp.toml" 2>"$DIR/server.log" &
PID=$!
for _ in $(seq 1 600); do ss -ltn "( sport = :16322 )" | grep -q LISTEN && break; sleep 0.1; done
common=(--port 16322 --domain localhost --users-prefix load --password pw --pid "$PID" --json --timeout-secs 300)
"$LOAD" register "${common[@]}" --count "$SESSIONS" --concurrency 20 >/dev/null
for round in $(seq 1 "$ROUNDS"); do
    for via in self echo.localhost; do
        echo "[round $round] messages via $via" >&2
        echo "{\"scenario\":\"messages-via\",\"via\":\"$via\",\"round\":$round,\"result\":$("$LOAD" messages "${common[@]}" --pairs "$SESSIONS" --messages "$MSGS" --via "$via")}"
    done
done
echo "{\"scenario\":\"plugin-list\",\"result\":$("$SERVER" plugin list --config "$DIR/poolxmpp.toml" | tr -d "\n")}"
kill "$PID"; wait "$PID" 2>/dev/null || true
if [ "${MICRO:-1}" != 0 ]; then
    echo "handle-stanza micro-benchmark" >&2
    (cd "$ROOT" && cargo bench -q -p poolxmpp --bench plugin_call -- "$DIR/plugins" "$CALLS" 2>/dev/null | tr -d '\n')
    echo
fi
rm -rf "$DIR"
