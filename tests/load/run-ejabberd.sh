#!/usr/bin/env bash
# Start a throw-away ejabberd (Debian's package) on loopback for benchmarking with
# poolxmpp-load, with its own config, spool and logs in a temp dir (or $EJABBERD_DIR).
#
#   PID=$(tests/load/run-ejabberd.sh [USERS])     # prints the beam process's PID
#   kill "$PID"                                   # stops it
#
# Creates a self-signed certificate for $DOMAIN, the config below (c2s STARTTLS on
# 127.0.0.1:$C2S_PORT, no traffic shapers, in-band registration from loopback without a
# delay, mod_muc at conference.$DOMAIN for rooms of up to 1,000 occupants, history 20),
# starts ejabberd in the foreground under its node name, and registers USERS accounts
# ${PREFIX}0.. with the load tool ($LOAD_BIN). Like the Prosody config it is minimal: no
# MAM, offline storage, carbons, stream management or shapers.
#
# Environment: EJABBERD_DIR, C2S_PORT (17222), DOMAIN (localhost), PREFIX (load),
#              PASSWORD (pw), LOAD_BIN.
set -euo pipefail

USERS="${1:-0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${EJABBERD_DIR:-$(mktemp -d /tmp/ejabberd-bench.XXXXXX)}"
C2S_PORT="${C2S_PORT:-17222}"
DOMAIN="${DOMAIN:-localhost}"
PREFIX="${PREFIX:-load}"
PASSWORD="${PASSWORD:-pw}"
LOAD_BIN="${LOAD_BIN:-$HERE/../../target/release/poolxmpp-load}"
NODE="bench$$@localhost"

command -v ejabberdctl >/dev/null || { echo "ejabberd not installed (apt-get install -y ejabberd)" >&2; exit 1; }
if ss -ltn "( sport = :$C2S_PORT )" | grep -q LISTEN; then
    echo "port $C2S_PORT already in use" >&2
    exit 1
fi
mkdir -p "$DIR/spool" "$DIR/logs"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$DOMAIN" \
    -addext "subjectAltName=DNS:$DOMAIN,DNS:conference.$DOMAIN" \
    -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null
cat "$DIR/cert.pem" "$DIR/key.pem" >"$DIR/server.pem"
cat >"$DIR/ejabberd.yml" <<YML
loglevel: warning
hosts:
  - "$DOMAIN"
certfiles:
  - "$DIR/server.pem"
listen:
  -
    port: $C2S_PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    starttls_required: true
    access: c2s
auth_password_format: scram
registration_timeout: infinity
acl:
  local:
    user_regexp: ""
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
  register_from:
    allow: loopback
  muc_create:
    allow: local
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_register:
    access: register
    ip_access: register_from
    welcome_message: {}
  mod_muc:
    host: "conference.$DOMAIN"
    access_create: muc_create
    max_users: 1000
    history_size: 20
    max_user_conferences: 1000
YML
# Its own control config: Debian's /etc/ejabberd/ejabberdctl.cfg names the system config.
printf 'ERLANG_NODE=%s\nPOLL=true\nERL_PROCESSES=250000\n' "$NODE" >"$DIR/ejabberdctl.cfg"
cp /etc/ejabberd/inetrc "$DIR/inetrc" 2>/dev/null || true
if [ "$(id -u)" = 0 ]; then
    chown -R ejabberd:ejabberd "$DIR"
fi
# As root, become the ejabberd user with setpriv rather than through ejabberdctl's own su,
# which resets the open-file limit to 1024 (a room of 1,000 occupants needs more).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
AS_USER=()
[ "$(id -u)" = 0 ] && AS_USER=(setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME="$DIR")
nohup "${AS_USER[@]}" ejabberdctl --config-dir "$DIR" --config "$DIR/ejabberd.yml" --ctl-config "$DIR/ejabberdctl.cfg" \
    --spool "$DIR/spool" --logs "$DIR/logs" --node "$NODE" foreground >"$DIR/stdout.log" 2>&1 &
for _ in $(seq 1 150); do
    ss -ltn "( sport = :$C2S_PORT )" | grep -q LISTEN && break
    sleep 0.2
done
ss -ltn "( sport = :$C2S_PORT )" | grep -q LISTEN || { cat "$DIR/stdout.log" "$DIR"/logs/*.log >&2 || true; exit 1; }
PID=$(ss -ltnp "( sport = :$C2S_PORT )" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
if [ "$USERS" -gt 0 ]; then
    echo "registering $USERS users in-band with $LOAD_BIN..." >&2
    "$LOAD_BIN" register --port "$C2S_PORT" --domain "$DOMAIN" --users-prefix "$PREFIX" \
        --password "$PASSWORD" --count "$USERS" --concurrency 20 >&2 ||
        { echo "registration failed" >&2; kill "$PID"; exit 1; }
fi
echo "ejabberd pid $PID (node $NODE), dir $DIR, c2s 127.0.0.1:$C2S_PORT (STARTTLS)" >&2
echo "$PID"
