#!/usr/bin/env bash
# Side-by-side benchmark: the same poolxmpp-load runs against poolxmpp and Prosody, one
# server at a time, on this machine. Prints one JSON object per run (server, scenario,
# result) on stdout; progress goes to stderr.
#
#   tests/load/bench.sh            # full run (DESIGN §5 / issue 2 figures)
#   QUICK=1 tests/load/bench.sh    # small numbers, to check the script
#   ROUNDS=3 SERVERS="prosody before=/tmp/a/poolxmpp poolxmpp" tests/load/bench.sh
#
# Needs: release builds (cargo build --release -p poolxmpp -p poolxmpp-load) and prosody
# (apt-get install -y prosody). Everything listens on 127.0.0.1 only.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/../.."
LOAD="${LOAD_BIN:-$ROOT/target/release/poolxmpp-load}"
export LOAD_BIN="$LOAD"
DEFAULT_SERVER="$ROOT/target/release/poolxmpp"
ulimit -n 20000 2>/dev/null || true

if [ -n "${QUICK:-}" ]; then
    USERS=300 LOGINS=300 CONC=50 IDLE=200 PAIRS=20 MSGS=100
else
    # 100 pairs x 1,000 messages: long enough (a second or more of server time) for the
    # messages/s figure to rise above this machine's noise; 20,000 messages were not.
    USERS=2200 LOGINS=2000 CONC=100 IDLE=2000 PAIRS=100 MSGS=${MSGS:-1000}
fi
# ROUNDS=N runs the whole list of servers N times in turn, so builds compared in one run
# share the machine's slow and fast moments; report the median of each figure.
ROUNDS="${ROUNDS:-1}"
# Each word is `prosody`, `poolxmpp` (this tree's release build) or NAME=PATH: a poolxmpp
# binary of another build under its own name, so two builds (before and after a change) are
# compared with Prosody in one run, e.g. SERVERS="prosody before=/tmp/a/poolxmpp poolxmpp".
SERVERS="${SERVERS:-poolxmpp prosody}"

run_scenarios() { # name port pid
    local name=$1 port=$2 pid=$3
    local common=(--port "$port" --domain localhost --users-prefix load --password pw --pid "$pid" --json --timeout-secs 300)
    echo "[$name] idle" >&2
    echo "{\"server\":\"$name\",\"scenario\":\"idle\",\"result\":$("$LOAD" idle "${common[@]}" --connections "$IDLE" --concurrency "$CONC" --user-count "$USERS")}"
    echo "[$name] logins" >&2
    # Warm-up pass (caches the client's SCRAM derivations), then the measured pass.
    "$LOAD" logins "${common[@]}" --count "$LOGINS" --user-count "$USERS" --concurrency "$CONC" >/dev/null || true
    echo "{\"server\":\"$name\",\"scenario\":\"logins\",\"result\":$("$LOAD" logins "${common[@]}" --count "$LOGINS" --user-count "$USERS" --concurrency "$CONC")}"
    echo "[$name] messages" >&2
    echo "{\"server\":\"$name\",\"scenario\":\"messages\",\"result\":$("$LOAD" messages "${common[@]}" --pairs "$PAIRS" --messages "$MSGS" --concurrency "$CONC")}"
}

for s in $(for _ in $(seq 1 "$ROUNDS"); do echo $SERVERS; done); do
    case $s in
    poolxmpp | *=*)
        if [ "$s" = poolxmpp ]; then NAME=poolxmpp SERVER=$DEFAULT_SERVER; else NAME=${s%%=*} SERVER=${s#*=}; fi
        DIR=$(mktemp -d /tmp/poolxmpp-bench.XXXXXX)
        cat >"$DIR/poolxmpp.toml" <<TOML
data_dir = "$DIR/data"
[[domain]]
name = "localhost"
[listen]
starttls = ["127.0.0.1:16222"]
direct_tls = ["127.0.0.1:16223"]
[features]
registration = true
[plugins]
enabled = false
[log]
level = "warn"
TOML
        "$SERVER" serve --config "$DIR/poolxmpp.toml" 2>"$DIR/server.log" &
        PID=$!
        for _ in $(seq 1 100); do ss -ltn "( sport = :16222 )" | grep -q LISTEN && break; sleep 0.1; done
        echo "[$NAME] registering $USERS users" >&2
        "$LOAD" register --port 16222 --domain localhost --users-prefix load --password pw --count "$USERS" --concurrency 20 >&2
        # Fresh process for the memory figure: restart after registration.
        kill "$PID"; wait "$PID" || true
        "$SERVER" serve --config "$DIR/poolxmpp.toml" 2>>"$DIR/server.log" &
        PID=$!
        for _ in $(seq 1 100); do ss -ltn "( sport = :16222 )" | grep -q LISTEN && break; sleep 0.1; done
        run_scenarios "$NAME" 16222 "$PID"
        kill "$PID"; wait "$PID" || true
        ;;
    prosody)
        PID=$(PROSODY_DIR=$(mktemp -d /tmp/prosody-bench.XXXXXX) "$HERE/run-prosody.sh" "$USERS")
        run_scenarios prosody 15222 "$PID"
        kill "$PID"; wait "$PID" 2>/dev/null || true
        ;;
    esac
done
