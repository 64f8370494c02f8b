# Shared by the benchmark scripts that run poolxmpp on a throw-away PostgreSQL
# (bench-pool.sh, bench-placement.sh): source it, then call bench_init.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_init pool-bench            # DIR, PIDS, cleanup on exit
#   pg_init "$DIR/pg"; pg_start "$DIR/pg" 16432
#   write_config n1 127.0.0.2; pool_section n1 127.0.0.2 >>"$DIR/n1/poolxmpp.toml"
#   start_server n1 127.0.0.2
#
# Everything listens on 127.0.0.x only; every wait is bounded.

LIB_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$LIB_HERE/../.." && pwd)"
LOAD="$ROOT/target/release/poolxmpp-load"
SERVER="$ROOT/target/release/poolxmpp"
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
CLIENT_PORT=16222 # every node's and the redirector's STARTTLS port, on its own 127.0.0.x
POOL_PORT=16270
PIDS=()
PGDIRS=()
PGUSER_RUN=""

# bench_init NAME: a fresh work directory in $DIR, a high open-file limit, and a cleanup
# on exit that stops every server and PostgreSQL started through this file.
bench_init() {
    DIR=$(mktemp -d "/tmp/poolxmpp-$1.XXXXXX")
    ulimit -n 20000 2>/dev/null || true
    [ "$(id -u)" = 0 ] && PGUSER_RUN="runuser -u nobody --" && chmod 777 "$DIR"
    trap bench_cleanup EXIT
    for bin in "$LOAD" "$SERVER"; do
        [ -x "$bin" ] || { echo "missing $bin: cargo build --release -p poolxmpp -p poolxmpp-load" >&2; exit 2; }
    done
}

bench_cleanup() {
    stop_servers
    for d in "${PGDIRS[@]}"; do pg_stop "$d"; done
}

# pg_init PGDIR: initdb (as nobody when running as root: initdb refuses root).
pg_init() {
    mkdir -p "$1"
    [ -n "$PGUSER_RUN" ] && chown nobody "$1"
    $PGUSER_RUN "$PGBIN/initdb" -D "$1" -U postgres -A trust >/dev/null
}

# pg_start PGDIR PORT: start PostgreSQL on 127.0.0.1:PORT (socket in $DIR); sets $STORE.
pg_start() {
    $PGUSER_RUN "$PGBIN/pg_ctl" -D "$1" -w -t 60 -o "-p $2 -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" -l "$1.log" start >/dev/null
    PGDIRS+=("$1")
    STORE="postgres://postgres@127.0.0.1:$2/postgres"
    PSQL=("$PGBIN/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$2" -U postgres -d postgres)
}

# pg_stop PGDIR: fast stop (waits); harmless when not running.
pg_stop() {
    [ -f "$1/postmaster.pid" ] && $PGUSER_RUN "$PGBIN/pg_ctl" -D "$1" -m fast -w -t 30 stop >/dev/null 2>&1
    [ -f "$1/postmaster.pid" ] && $PGUSER_RUN "$PGBIN/pg_ctl" -D "$1" -m immediate stop >/dev/null 2>&1
    return 0
}

# write_config NAME IP: $DIR/NAME/poolxmpp.toml for a server on IP:$CLIENT_PORT using $STORE,
# in-band registration on, plugins off (append a [plugins] table instead with PLUGINS=DIR).
write_config() {
    local name=$1 ip=$2
    mkdir -p "$DIR/$name"
    cat >"$DIR/$name/poolxmpp.toml" <<TOML
data_dir = "$DIR/$name/data"
store = "$STORE"
[[domain]]
name = "localhost"
[listen]
starttls = ["$ip:$CLIENT_PORT"]
direct_tls = []
[features]
registration = true
[log]
level = "warn"
TOML
    if [ -n "${PLUGINS:-}" ]; then
        printf '[plugins]\ndir = "%s"\n' "$PLUGINS" >>"$DIR/$name/poolxmpp.toml"
    else
        printf '[plugins]\nenabled = false\n' >>"$DIR/$name/poolxmpp.toml"
    fi
}

# pool_section NAME IP [redirect]: the [pool] table of node NAME (pool CA in $DIR/tls).
pool_section() {
    printf '[pool]\nnode_id = "%s"\nlisten = "%s:%s"\ntls_dir = "%s"\n' "$1" "$2" "$POOL_PORT" "$DIR/tls"
    [ -n "${3:-}" ] && printf 'redirect = %s\n' "$3"
    return 0
}

# start_server NAME IP [serve|redirect]: run poolxmpp with $DIR/NAME/poolxmpp.toml, log to
# $DIR/NAME.log, and wait (at most 60 s) until it listens on IP:$CLIENT_PORT.
start_server() {
    local name=$1 ip=$2 cmd=${3:-serve}
    "$SERVER" "$cmd" --config "$DIR/$name/poolxmpp.toml" 2>>"$DIR/$name.log" &
    PIDS+=($!)
    for _ in $(seq 1 600); do
        ss -ltn "( sport = :$CLIENT_PORT )" | grep -q "$ip:$CLIENT_PORT" && return 0
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "$name did not start; its log:" >&2
    tail -20 "$DIR/$name.log" >&2
    exit 1
}

# stop_servers: SIGTERM every server started by start_server, wait at most 15 s, then SIGKILL.
stop_servers() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for _ in $(seq 1 150); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    PIDS=()
}

# node_stats NAME...: "NAME":{poolxmpp stats},... (no trailing comma) for a JSON object.
node_stats() {
    local out="" n
    for n in "$@"; do out+="\"$n\":$("$SERVER" stats --config "$DIR/$n/poolxmpp.toml" | tr -d '\n ')," ; done
    printf '%s' "${out%,}"
}

# wait_links N NAME: wait (at most 30 s) until node NAME has N pool links up.
wait_links() {
    for _ in $(seq 1 300); do
        [ "$("$SERVER" stats --config "$DIR/$2/poolxmpp.toml" 2>/dev/null | jq -r '.links // 0')" -ge "$1" ] 2>/dev/null && return 0
        sleep 0.1
    done
    echo "node $2 has fewer than $1 links after 30 s" >&2
    return 1
}
