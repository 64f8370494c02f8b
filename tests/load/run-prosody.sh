#!/usr/bin/env bash
# Start a throw-away Prosody on loopback for benchmarking with poolxmpp-load.
#
#   tests/load/run-prosody.sh [USERS]
#
# Creates a temp dir (or $PROSODY_DIR), a self-signed certificate for $DOMAIN,
# the config from prosody-bench.cfg.lua, starts prosody in the background,
# creates USERS accounts ${PREFIX}0..${PREFIX}$((USERS-1)) with password
# $PASSWORD and prints prosody's PID on stdout (everything else goes to
# stderr), so:   PID=$(tests/load/run-prosody.sh 400)
# Stop it with:  kill "$PID"
#
# Accounts are created by XEP-0077 in-band registration with the load tool
# (`poolxmpp-load register`, ~1000 users/s) when its binary is found at
# $LOAD_BIN (default: target/release/poolxmpp-load), otherwise with
# `prosodyctl register` (~10 users/s, run before the server starts).
#
# Environment: PROSODY_DIR, C2S_PORT (15222), TLS_PORT (15223),
#              DOMAIN (localhost), PREFIX (load), PASSWORD (pw),
#              LOAD_BIN, PARALLEL (4 concurrent prosodyctl runs),
#              KEY (rsa2048|ec256: server certificate key type),
#              MUC_DOMAIN (adds a mod_muc component at that address).
set -euo pipefail

USERS="${1:-0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${PROSODY_DIR:-$(mktemp -d /tmp/prosody-bench.XXXXXX)}"
C2S_PORT="${C2S_PORT:-15222}"
TLS_PORT="${TLS_PORT:-15223}"
DOMAIN="${DOMAIN:-localhost}"
PREFIX="${PREFIX:-load}"
PASSWORD="${PASSWORD:-pw}"
PARALLEL="${PARALLEL:-4}"
KEY="${KEY:-rsa2048}"
LOAD_BIN="${LOAD_BIN:-$HERE/../../target/release/poolxmpp-load}"

command -v prosody >/dev/null || { echo "prosody not installed (apt-get install -y prosody)" >&2; exit 1; }
if ss -ltn "( sport = :$C2S_PORT or sport = :$TLS_PORT )" | grep -q LISTEN; then
    echo "port $C2S_PORT or $TLS_PORT already in use" >&2
    exit 1
fi

mkdir -p "$DIR/data" "$DIR/certs"
if [ "$KEY" = ec256 ]; then
    keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
else
    keyopt=(-newkey rsa:2048)
fi
openssl req -x509 "${keyopt[@]}" -nodes -days 30 -subj "/CN=$DOMAIN" \
    -addext "subjectAltName=DNS:$DOMAIN" \
    -keyout "$DIR/certs/$DOMAIN.key" -out "$DIR/certs/$DOMAIN.crt" 2>/dev/null

run_as_root=false
[ "$(id -u)" = 0 ] && run_as_root=true
sed -e "s|@DIR@|$DIR|g" -e "s|@C2S_PORT@|$C2S_PORT|g" -e "s|@TLS_PORT@|$TLS_PORT|g" \
    -e "s|@DOMAIN@|$DOMAIN|g" -e "s|@RUN_AS_ROOT@|$run_as_root|g" \
    "$HERE/prosody-bench.cfg.lua" >"$DIR/prosody.cfg.lua"
CFG="$DIR/prosody.cfg.lua"
# MUC_DOMAIN=conference.localhost adds a multi-user chat service (mod_muc) for bench-muc.sh:
# rooms without history replay limits beyond the default, no per-occupant throttling.
if [ -n "${MUC_DOMAIN:-}" ]; then
    printf '\nComponent "%s" "muc"\n    max_history_messages = 20\n' "$MUC_DOMAIN" >>"$CFG"
fi

if [ "$USERS" -gt 0 ] && [ ! -x "$LOAD_BIN" ]; then
    echo "registering $USERS users with prosodyctl (parallel $PARALLEL)..." >&2
    seq 0 $((USERS - 1)) | xargs -P "$PARALLEL" -I{} \
        prosodyctl --config "$CFG" register "$PREFIX{}" "$DOMAIN" "$PASSWORD" >&2
fi

nohup prosody --config "$CFG" -F >"$DIR/stdout.log" 2>&1 &
PID=$!
for _ in $(seq 1 50); do
    if ss -ltn "( sport = :$C2S_PORT )" | grep -q LISTEN; then
        break
    fi
    kill -0 "$PID" 2>/dev/null || { cat "$DIR/stdout.log" "$DIR/prosody.log" >&2 || true; exit 1; }
    sleep 0.2
done
if [ "$USERS" -gt 0 ] && [ -x "$LOAD_BIN" ]; then
    echo "registering $USERS users in-band with $LOAD_BIN..." >&2
    "$LOAD_BIN" register --port "$C2S_PORT" --domain "$DOMAIN" --users-prefix "$PREFIX" \
        --password "$PASSWORD" --count "$USERS" --concurrency 20 >&2 ||
        { echo "registration failed" >&2; kill "$PID"; exit 1; }
fi
echo "prosody pid $PID, dir $DIR, c2s 127.0.0.1:$C2S_PORT (STARTTLS), 127.0.0.1:$TLS_PORT (direct TLS)" >&2
echo "$PID"
