#!/usr/bin/env bash
# Placement strategies (issue 5): the same clustered social graph (USERS users in
# communities of power-law sizes, rosters mostly inside the community) is logged in
# through the redirector of a fresh four-node pool once per strategy, then every user
# sends MSGS chats to random roster contacts. Prints one JSON line per strategy on stdout
# (`poolxmpp-load placement`: crossed fraction from the nodes' counters, sessions per
# node, lost messages, ...), then a summary table on stderr; progress goes to stderr.
#
#   tests/load/bench-placement.sh           # full run: 5,000 users
#   QUICK=1 tests/load/bench-placement.sh   # 400 users, to check the script
#   STRATEGIES="builtin placement-roster" SEED=2 tests/load/bench-placement.sh
#
# STRATEGIES: plugin names, or `builtin` for no [placement] strategy (the host's own
# hashing). CONC: logins in flight (default 8). The redirector asks its strategy one user
# at a time and counts the wait in the queue against the plugin's time budget, so with
# many logins in flight a slow strategy (placement-roster reads each contact's recorded
# home) times out and the host falls back to hashing: the `fallbacks` column shows it.
#
# Each strategy gets a fresh PostgreSQL cloned from one seeded data directory (accounts
# registered in-band, rosters COPYed from `poolxmpp-load graph --sql`), four nodes on
# 127.0.0.2-5 (redirect = false: clients arrive through the redirector) and the redirector
# on 127.0.0.6 with the strategy plugin.
#
# Needs: cargo build --release -p poolxmpp -p poolxmpp-load; the wasm32-wasip2 target (for
# `poolxmpp plugin build`); PostgreSQL's server binaries (Debian package postgresql); jq.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
if [ -n "${QUICK:-}" ]; then USERS=${USERS:-400}; else USERS=${USERS:-5000}; fi
MSGS=${MSGS:-4}
SEED=${SEED:-1}
CONC=${CONC:-8}
STRATEGIES=${STRATEGIES:-placement-hashing placement-least-loaded placement-roster}
PGPORT=16432
NODES=(n1 n2 n3 n4)
bench_init placement-bench
echo "work directory: $DIR" >&2
RESULTS="$DIR/results.jsonl"
GRAPH=(--users "$USERS" --seed "$SEED")

echo "building the placement plugins" >&2
"$SERVER" plugin build --source "$ROOT" --out "$DIR/plugins-built" >&2
for s in $STRATEGIES; do
    [ "$s" = builtin ] && continue
    [ -f "$DIR/plugins-built/$s.wasm" ] || { echo "no plugin $s in plugins/" >&2; exit 2; }
    mkdir -p "$DIR/plugins-$s"
    cp "$DIR/plugins-built/$s.wasm" "$DIR/plugins-built/$s.toml" "$DIR/plugins-$s/"
done

# One seeded database: accounts (in-band registration on a plain node) and rosters.
echo "seeding $USERS accounts and their rosters" >&2
pg_init "$DIR/seed-pg"
pg_start "$DIR/seed-pg" "$PGPORT"
write_config seed 127.0.0.2
start_server seed 127.0.0.2
"$LOAD" register --host 127.0.0.2 --port "$CLIENT_PORT" --domain localhost --users-prefix load --password pw \
    --count "$USERS" --concurrency 20 --timeout-secs 600 --json >"$DIR/register.json" ||
    { echo "registration failed: $(cat "$DIR/register.json")" >&2; exit 1; }
stop_servers
"$LOAD" graph "${GRAPH[@]}" --prefix load --domain localhost --sql | "${PSQL[@]}"
"$LOAD" graph "${GRAPH[@]}" >"$DIR/graph.json"
echo "graph: $(cat "$DIR/graph.json")" >&2
pg_stop "$DIR/seed-pg"
"$SERVER" pool init --dir "$DIR/tls" --nodes "$(IFS=,; echo "${NODES[*]}")" >/dev/null

for s in $STRATEGIES; do
    echo "[$s] fresh PostgreSQL, four nodes, the redirector" >&2
    rm -rf "$DIR/run" "$DIR"/n? "$DIR/redirector"
    mkdir -p "$DIR/run"; chmod 777 "$DIR/run"
    cp -a "$DIR/seed-pg" "$DIR/run/pg"
    pg_start "$DIR/run/pg" "$PGPORT"
    configs=()
    for i in "${!NODES[@]}"; do
        n=${NODES[$i]} ip=127.0.0.$((i + 2))
        write_config "$n" "$ip"
        pool_section "$n" "$ip" false >>"$DIR/$n/poolxmpp.toml"
        start_server "$n" "$ip"
        configs+=("$DIR/$n/poolxmpp.toml")
    done
    for n in "${NODES[@]}"; do wait_links $((${#NODES[@]} - 1)) "$n"; done
    if [ "$s" = builtin ]; then
        write_config redirector 127.0.0.6
    else
        PLUGINS="$DIR/plugins-$s" write_config redirector 127.0.0.6
        printf '[placement]\nstrategy = "%s"\n' "$s" >>"$DIR/redirector/poolxmpp.toml"
    fi
    start_server redirector 127.0.0.6 redirect
    if [ "$s" != builtin ]; then # the strategy must be loaded before the first login
        for _ in $(seq 1 300); do
            "$SERVER" plugin list --config "$DIR/redirector/poolxmpp.toml" 2>/dev/null | grep -q "$s" && break
            sleep 0.1
        done
    fi
    echo "[$s] logins and workload" >&2
    line=$("$LOAD" placement --host 127.0.0.6 --port "$CLIENT_PORT" --domain localhost --users-prefix load \
        --password pw --concurrency "$CONC" "${GRAPH[@]}" --messages-per-user "$MSGS" --label "$s" \
        --server-bin "$SERVER" --node-config "$(IFS=,; echo "${configs[*]}")" \
        --redirector-config "$DIR/redirector/poolxmpp.toml" --json --timeout-secs 600) || true
    [ -n "$line" ] || { echo "[$s] the load tool failed; logs in $DIR" >&2; exit 1; }
    echo "$line" | tee -a "$RESULTS"
    if [ "$s" != builtin ]; then # the strategy's call latency, as the redirector measured it
        "$SERVER" plugin list --config "$DIR/redirector/poolxmpp.toml" >"$DIR/plugin-list-$s.json" 2>&1 || true
    fi
    echo "$line" | jq -c '{strategy: .label, crossed: .crossed.fraction, max_over_mean: .max_over_mean_sessions,
        lost: .workload.lost, logins: .logins.established, fallbacks: .redirector.placement.fallbacks}' >&2
    stop_servers
    pg_stop "$DIR/run/pg"
done

# Summary: one row per strategy, and roster grouping against hashing.
{
    # crossed: nodes' counters; client: the tool's own view; in-comm: crossed fraction of
    # messages inside a community; off-maj: users not on their community's main node.
    printf '\n%-24s %7s %7s %8s %7s %8s %5s %7s %9s %4s\n' strategy crossed client in-comm off-maj max/mean lost logins fallbacks conc
    jq -r '[.label, .crossed.fraction, .client_view.crossed_fraction, .client_view.crossed_fraction_inside_community,
        .client_view.communities.users_off_their_community_majority_node, .max_over_mean_sessions, .workload.lost,
        .logins.established, (.redirector.placement.fallbacks // "-"), .logins.concurrency] | @tsv' "$RESULTS" |
        while IFS=$'\t' read -r l c cc ic om m lost ok fb conc; do
            printf '%-24s %7s %7s %8s %7s %8s %5s %7s %9s %4s\n' "$l" "$c" "$cc" "$ic" "$om" "$m" "$lost" "$ok" "$fb" "$conc"
        done
    jq -rs '(map(select(.label == "placement-hashing" or .label == "builtin")) | first) as $h
        | (map(select(.label == "placement-roster")) | first) as $r
        | if $h and $r and $h.crossed.fraction > 0 then
            "roster / hashing crossed fraction: \($r.crossed.fraction / $h.crossed.fraction * 1000 | round / 1000)"
            + " (target <= 0.333 at max/mean <= 1.25; roster max/mean \($r.max_over_mean_sessions))"
          else empty end' "$RESULTS"
    echo "raw results: $RESULTS"
} >&2
rm -rf "$DIR/seed-pg" "$DIR/run" # the databases; results and logs stay in $DIR
jq -se 'all(.ok)' "$RESULTS" >/dev/null || { echo "some run lost logins or messages (see \"ok\")" >&2; exit 1; }
