#!/usr/bin/env bash
# The plugin contract's costs (issue 12, "must-show 4"), each pair of variants measured in
# alternating rounds against one server per configuration (127.0.0.1, SQLite in a temp dir):
#   1. native routing vs a round trip through the echo plugin (as bench-plugins.sh);
#   2. fan-out: one event-probe call sending a headline to 100 recipients in one send-many
#      call vs in 100 send calls (copies delivered per second, server CPU per copy);
#   3. 1:1 messages with the blocklist filter (interest = "declared") loaded and every 10th
#      user blocking nobody@localhost vs the same config without it (target: >= 0.9x);
#      the filter's `plugin list` entry shows how many stanzas skipped it. FILTER=privacy
#      measures the bundled privacy plugin (XEP-0016 with XEP-0191) the same way (issue 15).
# One JSON line per run on stdout ({"scenario":...,"round":...,"result":{...}}), and each
# server's `plugin list` after its rounds. Exit status 1 if any run reported a failure.
#
#   tests/load/bench-contract.sh           # full run (ROUNDS=3)
#   QUICK=1 tests/load/bench-contract.sh   # small numbers, to check the script
#   SECTIONS="3" FILTER=privacy tests/load/bench-contract.sh   # the privacy plugin only
#   SERVER=... LOAD=...                    # other builds than target/release's
#
# Needs: cargo build --release -p poolxmpp -p poolxmpp-load. Listens on 127.0.0.1 only;
# every wait is bounded.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
want_load="${LOAD:-}" want_server="${SERVER:-}"
. "$HERE/lib.sh"
LOAD="${want_load:-$LOAD}" SERVER="${want_server:-$SERVER}"
# 1: SESSIONS x MSGS as bench-plugins.sh; 2: COMMANDS fan-outs to RECIPIENTS (a few seconds
# a round); 3: PAIRS sender/receiver pairs x FILTER_MSGS.
if [ -n "${QUICK:-}" ]; then
    ROUNDS=1 SESSIONS=20 MSGS=100 RECIPIENTS=20 COMMANDS=50 PAIRS=20 FILTER_MSGS=100
else
    ROUNDS=${ROUNDS:-3} SESSIONS=100 MSGS=1000 RECIPIENTS=100 COMMANDS=5000 PAIRS=100 FILTER_MSGS=3000
fi
STORE=sqlite
FAILED=0
SECTIONS="${SECTIONS:-1 2 3}"
FILTER="${FILTER:-blocklist}"
# section N: whether section N is to run.
section() { [[ " $SECTIONS " == *" $1 "* ]]; }
declare -A PORT_OF PID_OF

bench_init contract-bench
echo "building the example plugins" >&2
timeout 1800 "$SERVER" plugin build --examples --source "$ROOT" --out "$DIR/all" >&2

# serve NAME PORT [PLUGIN...]: start a server NAME on 127.0.0.1:PORT whose plugins dir
# holds only the named example plugins (none: an empty dir, plugins still enabled).
serve() {
    local name=$1 port=$2 p
    shift 2
    mkdir -p "$DIR/$name/plugins"
    for p in "$@"; do cp "$DIR/all/$p.toml" "$DIR/all/$p.wasm" "$DIR/$name/plugins/"; done
    CLIENT_PORT=$port PLUGINS="$DIR/$name/plugins" write_config "$name" 127.0.0.1
    CLIENT_PORT=$port start_server "$name" 127.0.0.1
    PORT_OF[$name]=$port PID_OF[$name]=${PIDS[-1]}
}

# load NAME ARGS...: the load tool against server NAME (its CPU measured too).
load() {
    local name=$1
    shift
    "$LOAD" "$@" --port "${PORT_OF[$name]}" --pid "${PID_OF[$name]}" --domain localhost \
        --users-prefix load --password pw --json --timeout-secs 300
}

# register NAME COUNT: create users load0..load{COUNT-1} on server NAME (not timed).
register() {
    load "$1" register --count "$2" --concurrency 20 >/dev/null || { echo "registration on $1 failed" >&2; exit 1; }
}

# measure NAME 'JSON FIELDS' ARGS...: one run of the load tool against NAME, printed as
# {FIELDS,"result":{...}}; a run that reports a failure (exit status != 0) is counted.
measure() {
    local name=$1 head=$2 out
    shift 2
    out=$(load "$name" "$@") || { FAILED=$((FAILED + 1)); echo "failed: $head" >&2; }
    echo "{$head,\"result\":${out:-null}}"
}

# plugin_list NAME: the runtime's per-plugin counters of server NAME as one JSON line.
plugin_list() {
    echo "{\"scenario\":\"plugin-list\",\"server\":\"$1\",\"result\":$(timeout 30 "$SERVER" plugin list --config "$DIR/$1/poolxmpp.toml" | tr -d '\n')}"
}

if section 1; then
echo "1. native routing vs the echo plugin" >&2
serve echo 16521 echo
register echo "$SESSIONS"
for round in $(seq 1 "$ROUNDS"); do
    for via in self echo.localhost; do
        echo "[round $round] messages via $via" >&2
        measure echo "\"scenario\":\"messages-via\",\"via\":\"$via\",\"round\":$round" \
            messages --pairs "$SESSIONS" --messages "$MSGS" --via "$via"
    done
done
plugin_list echo
stop_servers
fi

if section 2; then
echo "2. fan-out: one send-many call vs one send per recipient" >&2
serve fanout 16522 event-probe
register fanout $((RECIPIENTS + 1))
for round in $(seq 1 "$ROUNDS"); do
    for mode in many each; do
        echo "[round $round] fanout --mode $mode" >&2
        measure fanout "\"scenario\":\"fanout\",\"mode\":\"$mode\",\"round\":$round" \
            fanout --recipients "$RECIPIENTS" --messages "$COMMANDS" --mode "$mode"
    done
done
plugin_list fanout
stop_servers
fi

if section 3; then
echo "3. 1:1 messages with the $FILTER filter (10% of users with rules) vs none" >&2
serve "$FILTER" 16523 "$FILTER"
serve none 16524
register "$FILTER" $((2 * PAIRS))
register none $((2 * PAIRS))
measure "$FILTER" "\"scenario\":\"block\",\"filter\":\"$FILTER\"" block --count $((2 * PAIRS)) --fraction 0.1
for round in $(seq 1 "$ROUNDS"); do
    for filter in "$FILTER" none; do
        echo "[round $round] messages, filter $filter" >&2
        measure "$filter" "\"scenario\":\"messages-filter\",\"filter\":\"$filter\",\"round\":$round" \
            messages --pairs "$PAIRS" --messages "$FILTER_MSGS"
    done
done
plugin_list "$FILTER"
stop_servers
fi

rm -rf "$DIR"
[ "$FAILED" = 0 ] || { echo "$FAILED run(s) reported failures" >&2; exit 1; }
