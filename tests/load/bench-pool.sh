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
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LOAD="$ROOT/target/release/poolxmpp-load"
SERVER="$ROOT/target/release/poolxmpp"
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
if [ -n "${QUICK:-}" ]; then USERS=300 LOGINS=300 PAIRS=20 MSGS=100; else USERS=2200 LOGINS=2000 PAIRS=100 MSGS=2000; fi
ulimit -n 20000 2>/dev/null || true

DIR=$(mktemp -d /tmp/poolxmpp-pool-bench.XXXXXX)
PIDS=()
PGUSER_RUN=""
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf /tmp/poolxmpp-pool-bench-keep 2>/dev/null || true
    [ -f "$DIR/pg/postmaster.pid" ] && $PGUSER_RUN "$PGBIN/pg_ctl" -D "$DIR/pg" -m immediate stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

# PostgreSQL as the current user (initdb refuses root: run it as nobody's own dir owner).
PGPORT=16432
if [ "$(id -u)" = 0 ]; then PGUSER_RUN="runuser -u nobody --"; mkdir -p "$DIR/pg"; chown nobody "$DIR/pg"; chmod 777 "$DIR"; fi
$PGUSER_RUN "$PGBIN/initdb" -D "$DIR/pg" -U postgres -A trust >/dev/null
$PGUSER_RUN "$PGBIN/pg_ctl" -D "$DIR/pg" -o "-p $PGPORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" -l "$DIR/pg.log" start >/dev/null
STORE="postgres://postgres@127.0.0.1:$PGPORT/postgres"
"$SERVER" pool init --dir "$DIR/tls" --nodes n1,n2,n3 >/dev/null

write_config() { # name ip pool?
    local name=$1 ip=$2 pool=$3
    mkdir -p "$DIR/$name"
    cat >"$DIR/$name/poolxmpp.toml" <<TOML
data_dir = "$DIR/$name/data"
store = "$STORE"
[[domain]]
name = "localhost"
[listen]
starttls = ["$ip:16222"]
direct_tls = []
[features]
registration = true
[plugins]
enabled = false
[log]
level = "warn"
TOML
    if [ "$pool" = yes ]; then
        printf '[pool]\nnode_id = "%s"\nlisten = "%s:16270"\ntls_dir = "%s"\n' "$name" "$ip" "$DIR/tls" >>"$DIR/$name/poolxmpp.toml"
    fi
}
start() { # name ip
    "$SERVER" serve --config "$DIR/$1/poolxmpp.toml" 2>>"$DIR/$1.log" &
    PIDS+=($!)
    for _ in $(seq 1 200); do ss -ltn "( sport = :16222 )" | grep -q "$2:16222" && return; sleep 0.1; done
    echo "node $1 did not start" >&2; exit 1
}
stats() { for n in "$@"; do printf '"%s":%s,' "$n" "$("$SERVER" stats --config "$DIR/$n/poolxmpp.toml" | tr -d '\n ')"; done; }
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
    echo "{\"setup\":\"$label\",\"scenario\":\"stats-before-messages\",\"result\":{$(stats "${nodes[@]}" | sed 's/,$//')}}"
    echo "[$label] messages" >&2
    echo "{\"setup\":\"$label\",\"scenario\":\"messages\",\"result\":$("$LOAD" messages "${common[@]}" --pairs "$PAIRS" --messages "$MSGS" --concurrency 100)}"
    echo "{\"setup\":\"$label\",\"scenario\":\"stats-after-messages\",\"result\":{$(stats "${nodes[@]}" | sed 's/,$//')}}"
}

# Three-node pool.
for i in 1 2 3; do write_config "n$i" "127.0.0.$((i + 1))" yes; start "n$i" "127.0.0.$((i + 1))"; done
sleep 3 # links come up within a heartbeat or two
echo "[pool] registering $USERS users" >&2
"$LOAD" register --host 127.0.0.2 --port 16222 --domain localhost --users-prefix load --password pw --count "$USERS" --concurrency 20 >&2
run pool-3 n1 n2 n3 -- 127.0.0.2:16222 127.0.0.3:16222 127.0.0.4:16222
for p in "${PIDS[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
PIDS=()

# One plain node on the same store.
write_config single 127.0.0.5 no
start single 127.0.0.5
run single single -- 127.0.0.5:16222
