#!/usr/bin/env bash
# Pool benchmark (issue 4): the same poolxmpp-load runs against a three-node pool (users
# spread over the nodes by a hash of their name) and against one plain node, both on one
# throw-away PostgreSQL, in one run. Prints one JSON object per run on stdout, including
# each node's counters (`poolxmpp stats`) from which the fraction of stanzas that crossed
# a pool link follows; progress goes to stderr.
#
#   tests/load/bench-pool.sh           # full run
#   QUICK=1 tests/load/bench-pool.sh   # small numbers, to check the script
#
# Needs: cargo build --release -p poolxmpp -p poolxmpp-load; PostgreSQL's server binaries
# (Debian package postgresql). Everything listens on 127.0.0.x only.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
if [ -n "${QUICK:-}" ]; then USERS=300 LOGINS=300 PAIRS=20 MSGS=100; else USERS=2200 LOGINS=2000 PAIRS=100 MSGS=2000; fi
bench_init pool-bench
pg_init "$DIR/pg"
pg_start "$DIR/pg" 16432
"$SERVER" pool init --dir "$DIR/tls" --nodes n1,n2,n3 >/dev/null

write_node() { # name ip pool?
    write_config "$1" "$2"
    if [ "$3" = yes ]; then pool_section "$1" "$2" >>"$DIR/$1/poolxmpp.toml"; fi
}
stats() { node_stats "$@"; }
run() { # label nodes -- spread...
    local label=$1; shift
    local nodes=()
    while [ "$1" != -- ]; do nodes+=("$1"); shift; done
    shift
    local spread; spread=$(IFS=,; echo "$*")
    local common=(--spread "$spread" --domain localhost --users-prefix load --password pw --json --timeout-secs 300)
    echo "[$label] logins" >&2
    "$LOAD" logins "${common[@]}" --count "$LOGINS" --user-count "$USERS" --concurrency 100 >/dev/null || true
    echo "{\"setup\":\"$label\",\"scenario\":\"logins\",\"result\":$("$LOAD" logins "${common[@]}" --count "$LOGINS" --user-count "$USERS" --concurrency 100)}"
    echo "{\"setup\":\"$label\",\"scenario\":\"stats-before-messages\",\"result\":{$(stats "${nodes[@]}")}}"
    echo "[$label] messages" >&2
    echo "{\"setup\":\"$label\",\"scenario\":\"messages\",\"result\":$("$LOAD" messages "${common[@]}" --pairs "$PAIRS" --messages "$MSGS" --concurrency 100)}"
    echo "{\"setup\":\"$label\",\"scenario\":\"stats-after-messages\",\"result\":{$(stats "${nodes[@]}")}}"
}

# Three-node pool.
for i in 1 2 3; do write_node "n$i" "127.0.0.$((i + 1))" yes; start_server "n$i" "127.0.0.$((i + 1))"; done
sleep 3 # links come up within a heartbeat or two
echo "[pool] registering $USERS users" >&2
"$LOAD" register --host 127.0.0.2 --port 16222 --domain localhost --users-prefix load --password pw --count "$USERS" --concurrency 20 >&2
run pool-3 n1 n2 n3 -- 127.0.0.2:16222 127.0.0.3:16222 127.0.0.4:16222
stop_servers

# One plain node on the same store.
write_node single 127.0.0.5 no
start_server single 127.0.0.5
run single single -- 127.0.0.5:16222
