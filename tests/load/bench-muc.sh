#!/usr/bin/env bash
# Multi-user chat under load (issue 13, must-show 4): the same `poolxmpp-load muc` runs
# against poolxmpp (one node, SQLite, the bundled muc plugin), Prosody (mod_muc) and
# ejabberd (mod_muc), all from this machine, one server at a time, rounds alternating:
#   muc-100:  a room of OCC occupants, every one sending MSGS messages (window 5):
#             deliveries/s, delivery latency p50/p99;
#   muc-1000: a room of BIG occupants entering one after another (the BIG-th entry's time),
#             then 10 of them sending 5 messages each to all.
# One JSON line per run on stdout ({"scenario":...,"server":...,"round":...,"result":{...}});
# exit status 1 if any run reported a failure.
#
#   tests/load/bench-muc.sh                 # full run (ROUNDS=3)
#   QUICK=1 tests/load/bench-muc.sh         # small numbers, to check the script
#   SERVERS="poolxmpp" tests/load/bench-muc.sh
#   PIN=1 tests/load/bench-muc.sh           # server on CPU 0 only, the load tool on CPU 1
#                                           # with one thread: neither starves the other
#
# Needs: cargo build --release -p poolxmpp -p poolxmpp-load; prosody and ejabberd
# (apt-get install -y prosody ejabberd) for their runs (run-prosody.sh, run-ejabberd.sh).
# Listens on 127.0.0.1 only; every wait is bounded.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib.sh"
if [ -n "${QUICK:-}" ]; then
    ROUNDS=1 OCC=20 MSGS=5 BIG=100
else
    ROUNDS=${ROUNDS:-3} OCC=100 MSGS=20 BIG=1000
fi
SERVERS="${SERVERS:-poolxmpp prosody ejabberd}"
# With PIN=1 each server (every thread of it) gets CPU 0 and the load tool CPU 1, so the
# figures compare one core of each server rather than who wins the shared cores.
LOAD_CMD=("$LOAD")
if [ -n "${PIN:-}" ]; then
    LOAD_CMD=(taskset -c 1 "$LOAD" --threads 1)
fi
STORE=sqlite
FAILED=0
declare -A PORT_OF PID_OF

bench_init muc-bench
echo "building the plugins" >&2
timeout 1800 "$SERVER" plugin build --examples --source "$ROOT" --out "$DIR/all" >&2

start() { # NAME: start server NAME with BIG users
    case $1 in
    poolxmpp)
        mkdir -p "$DIR/poolxmpp/plugins"
        cp "$DIR/all/muc.toml" "$DIR/all/muc.wasm" "$DIR/poolxmpp/plugins/"
        CLIENT_PORT=16531 PLUGINS="$DIR/poolxmpp/plugins" write_config poolxmpp 127.0.0.1
        CLIENT_PORT=16531 start_server poolxmpp 127.0.0.1
        PORT_OF[poolxmpp]=16531 PID_OF[poolxmpp]=${PIDS[-1]}
        "$LOAD" register --port 16531 --domain localhost --users-prefix load --password pw \
            --count "$BIG" --concurrency 20 >/dev/null
        ;;
    prosody)
        PID_OF[prosody]=$(MUC_DOMAIN=conference.localhost PROSODY_DIR="$DIR/prosody" "$HERE/run-prosody.sh" "$BIG")
        PIDS+=("${PID_OF[prosody]}")
        PORT_OF[prosody]=15222
        ;;
    ejabberd)
        PID_OF[ejabberd]=$(EJABBERD_DIR="$DIR/ejabberd" "$HERE/run-ejabberd.sh" "$BIG")
        PIDS+=("${PID_OF[ejabberd]}")
        PORT_OF[ejabberd]=17222
        ;;
    esac
}

# measure NAME ROUND SCENARIO ARGS...: one run of the load tool against NAME.
measure() {
    local name=$1 round=$2 scenario=$3 out
    shift 3
    out=$("${LOAD_CMD[@]}" muc "$@" --port "${PORT_OF[$name]}" --pid "${PID_OF[$name]}" --domain localhost \
        --users-prefix load --password pw --json --timeout-secs 600) ||
        { FAILED=$((FAILED + 1)); echo "failed: $name $scenario round $round" >&2; }
    echo "{\"scenario\":\"$scenario\",\"server\":\"$name\",\"round\":$round,\"result\":${out:-null}}"
}

for s in $SERVERS; do
    start "$s"
    if [ -n "${PIN:-}" ]; then
        taskset -a -cp 0 "${PID_OF[$s]}" >/dev/null
    fi
done
for round in $(seq 1 "$ROUNDS"); do
    for s in $SERVERS; do
        echo "[$s] round $round: muc-100" >&2
        measure "$s" "$round" muc-100 --occupants "$OCC" --messages "$MSGS" --window 5 \
            --room "r100-$round@conference.localhost"
        echo "[$s] round $round: muc-1000" >&2
        measure "$s" "$round" muc-1000 --occupants "$BIG" --senders 10 --messages 5 --window 5 \
            --concurrency 50 --room "r1000-$round@conference.localhost"
    done
done
[ "$FAILED" = 0 ]
