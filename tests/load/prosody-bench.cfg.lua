-- Prosody configuration for side-by-side benchmarks with poolxmpp-load.
-- Tested with Prosody 0.12.3 (Debian bookworm package).
--
-- Placeholders (filled in by run-prosody.sh, or replace by hand):
--   @DIR@          scratch directory (data, certs, log)
--   @C2S_PORT@     STARTTLS client port (e.g. 15222)
--   @TLS_PORT@     XEP-0368 direct-TLS client port (e.g. 15223)
--   @DOMAIN@       virtual host / XMPP domain (e.g. localhost)
--   @RUN_AS_ROOT@  true when started as root (sandboxes), else false
--
-- Everything listens on 127.0.0.1 only. The module set is deliberately
-- minimal (no MAM, no offline storage, no carbons, no smacks, no rate limits)
-- so the numbers reflect the core c2s path: TLS, SASL, bind, presence,
-- message routing. Add modules here (and to poolxmpp) symmetrically if you
-- want to compare a richer feature set.

run_as_root = @RUN_AS_ROOT@
daemonize = false
pidfile = "@DIR@/prosody.pid"
data_path = "@DIR@/data"
plugin_paths = { }

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { @C2S_PORT@ }
c2s_direct_tls_ports = { @TLS_PORT@ }
c2s_direct_tls_interfaces = { "127.0.0.1" }
s2s_ports = { }
http_ports = { }
https_ports = { }

network_backend = "epoll"
-- Prosody leaves Nagle on by default; its multi-write replies (e.g. stream
-- header, then features) then stall on the client's delayed ACK: measured
-- ~50 ms vs ~9 ms per login on loopback. Disable it so the figures reflect
-- server work rather than TCP timer interplay (any server that does not set
-- TCP_NODELAY will show the same stall).
network_settings = { nagle = false }

modules_enabled = {
	"roster";    -- initial presence handling expects a roster store
	"saslauth";
	"tls";
	"disco";
	"ping";      -- XEP-0199 replies
	"register";  -- XEP-0077, used by `poolxmpp-load ... --register`
	"posix";     -- pidfile
}
modules_disabled = { "s2s" }

authentication = "internal_hashed"  -- SCRAM-SHA-1 with stored keys
storage = "internal"

-- TLS is mandatory; PLAIN only over TLS (prosody's default, made explicit).
c2s_require_encryption = true
allow_unencrypted_plain_auth = false

-- In-band registration for the benchmark users (loopback is allowlisted by
-- mod_register_limits by default; no throttling configured).
allow_registration = true

-- Only warnings and errors: per-connection info logging would cost Prosody CPU
-- that poolxmpp does not pay.
log = {
	warn = "@DIR@/prosody.log";
}

certificates = "@DIR@/certs"

VirtualHost "@DOMAIN@"
	ssl = {
		certificate = "@DIR@/certs/@DOMAIN@.crt";
		key = "@DIR@/certs/@DOMAIN@.key";
	}
