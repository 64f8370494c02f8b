"""Shared helpers for the poolxmpp end-to-end scenarios.

Every scenario drives the real server through slixmpp, a third-party XMPP
client library.  The helpers below wrap slixmpp's ClientXMPP so that:

* the client connects to an explicit host/port (127.0.0.1 + the test port)
  while using the hosted domain as the JID domain;
* certificate verification is disabled (the server uses self-signed certs);
* nothing is handled automatically on the client's behalf (no automatic
  subscription approval, no reconnection), so the scenarios observe exactly
  what the server sends;
* every wait is bounded by a timeout, so a broken server makes a scenario
  fail fast with a message saying what was being waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import ssl
import struct
import sys
import time
import traceback
from typing import Any, Callable, Iterable, Optional

import slixmpp
from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath, StanzaPath

# Default bound for every single wait in a scenario.
TIMEOUT = 10.0
# How long to wait when asserting that something does NOT arrive.
QUIET = 1.5

CLIENT_NS = "jabber:client"
ROSTER_NS = "jabber:iq:roster"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

log = logging.getLogger("scenario")


class ScenarioFailure(AssertionError):
    """An assertion about the server's behaviour did not hold."""


def check(condition: Any, message: str) -> None:
    if not condition:
        raise ScenarioFailure(message)


def step(message: str) -> None:
    """Print a progress line (shown by the Rust harness when a test fails)."""
    print(f"[{time.monotonic() - _START:7.3f}s] {message}", flush=True)


_START = time.monotonic()


def note(message: str) -> None:
    """A deviation from a SHOULD (not a failure); the harness prints these."""
    print(f"NOTE: {message}", flush=True)


# --------------------------------------------------------------------------
# Environment passed by the Rust harness
# --------------------------------------------------------------------------


class Env:
    """Where the server is and which accounts exist."""

    def __init__(self, args: argparse.Namespace):
        self.host: str = args.host
        self.port: int = args.port
        self.tls_port: Optional[int] = args.tls_port
        self.domain: str = args.domain
        self.domain2: Optional[str] = args.domain2
        self.phase: int = args.phase
        self.drain_cmd: Optional[str] = getattr(args, "drain_cmd", None)
        self.drained: Optional[str] = getattr(args, "drained", None)
        self.remove_cmd: Optional[str] = getattr(args, "remove_cmd", None)
        # A pool: clients are spread over these nodes round-robin, in creation order, so
        # the same scenario runs with its users (and an account's resources) on different
        # nodes. Empty: every client uses --host/--port.
        self.nodes: list[tuple[str, int, Optional[int]]] = []
        for spec in getattr(args, "node", None) or []:
            host, port, tls = spec.rsplit(":", 2)
            self.nodes.append((host, int(port), int(tls) if tls else None))
        self._next_node = 0
        self.accounts: dict[str, str] = {}
        for spec in args.account or []:
            jid, sep, password = spec.partition("=")
            if not sep:
                raise SystemExit(f"--account expects JID=PASSWORD, got {spec!r}")
            self.accounts[jid] = password

    def next_address(self) -> tuple[str, int, Optional[int]]:
        """(host, STARTTLS port, direct TLS port) for the next client."""
        if not self.nodes:
            return (self.host, self.port, self.tls_port)
        node = self.nodes[self._next_node % len(self.nodes)]
        self._next_node += 1
        return node

    def jid(self, local: str, domain: Optional[str] = None) -> str:
        return f"{local}@{domain or self.domain}"

    def password(self, jid: str) -> str:
        bare = JID(jid).bare
        if bare not in self.accounts:
            raise SystemExit(
                f"scenario needs account {bare}, harness provided {sorted(self.accounts)}"
            )
        return self.accounts[bare]

    def require_domain2(self) -> str:
        if not self.domain2:
            raise SystemExit("scenario needs --domain2")
        return self.domain2


def base_arg_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="STARTTLS c2s port")
    p.add_argument("--tls-port", type=int, help="XEP-0368 direct TLS port")
    p.add_argument("--domain", required=True)
    p.add_argument("--domain2")
    p.add_argument("--phase", type=int, default=1)
    p.add_argument(
        "--node",
        action="append",
        help="HOST:PORT:TLSPORT of one node of a pool (repeatable): clients are spread over them",
    )
    p.add_argument(
        "--account",
        action="append",
        help="JID=PASSWORD of an existing account (repeatable)",
    )
    p.add_argument(
        "--drain-cmd",
        help="shell command the drain scenario runs to drain a node (poolxmpp pool drain NODE)",
    )
    p.add_argument("--drained", help="HOST:PORT of the node the drain scenario drains")
    p.add_argument(
        "--remove-cmd",
        help="shell command the account_removal scenario runs to remove carol (poolxmpp user del)",
    )
    p.add_argument("--debug", action="store_true", help="slixmpp debug logging")
    return p


# --------------------------------------------------------------------------
# Inbox: a bounded-wait queue of received stanzas
# --------------------------------------------------------------------------


class Inbox:
    """Collects stanzas of one kind; waits are predicate based and bounded."""

    def __init__(self, owner: str, kind: str):
        self.owner = owner
        self.kind = kind
        self.items: list[Any] = []
        self._changed: Optional[asyncio.Event] = None

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def push(self, item: Any) -> None:
        self.items.append(item)
        self._event().set()

    def clear(self) -> None:
        self.items.clear()

    def take(self, pred: Callable[[Any], bool]) -> Optional[Any]:
        for i, item in enumerate(self.items):
            try:
                ok = pred(item)
            except Exception:  # a predicate must not crash the scan
                ok = False
            if ok:
                del self.items[i]
                return item
        return None

    def all(self, pred: Callable[[Any], bool]) -> list[Any]:
        out = []
        for item in self.items:
            try:
                if pred(item):
                    out.append(item)
            except Exception:
                pass
        return out

    async def wait(self, pred: Callable[[Any], bool], what: str, timeout: float = TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = self.take(pred)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = "\n    ".join(str(i) for i in self.items[-10:]) or "(nothing)"
                raise ScenarioFailure(
                    f"{self.owner}: timed out after {timeout:.0f}s waiting for {self.kind}: {what}\n"
                    f"  unmatched {self.kind} stanzas received (last 10):\n    {seen}"
                )
            ev = self._event()
            ev.clear()
            try:
                await asyncio.wait_for(ev.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def should(self, pred: Callable[[Any], bool], what: str, timeout: float = 3.0) -> Optional[Any]:
        """A SHOULD-level expectation: wait briefly, print a NOTE if missing."""
        try:
            return await self.wait(pred, what, timeout)
        except ScenarioFailure:
            note(f"{self.owner}: SHOULD-level behaviour missing: {what}")
            return None

    async def expect_none(self, pred: Callable[[Any], bool], what: str, duration: float = QUIET) -> None:
        """Assert that no matching stanza arrives within `duration` seconds."""
        await asyncio.sleep(duration)
        hits = self.all(pred)
        check(
            not hits,
            f"{self.owner}: received unexpected {self.kind} ({what}):\n    "
            + "\n    ".join(str(h) for h in hits),
        )


# --------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------


def insecure_ssl_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class LoginFailed(Exception):
    def __init__(self, label: str, reason: str, conditions: list[str]):
        super().__init__(f"{label}: login failed: {reason} (SASL conditions: {conditions})")
        self.reason = reason
        self.conditions = conditions


class Client(ClientXMPP):
    """A slixmpp client that records everything and never acts on its own."""

    def __init__(
        self,
        env: Env,
        jid: str,
        password: Optional[str] = None,
        *,
        mech: Optional[str] = None,
        direct_tls: bool = False,
        label: Optional[str] = None,
    ):
        if password is None:
            password = env.password(jid)
        super().__init__(jid, password, sasl_mech=mech)
        self.env = env
        self.label = label or jid
        self.direct_tls = direct_tls
        # The node this client uses, chosen at its first login (see Env.next_address).
        self.address: Optional[tuple[str, int, Optional[int]]] = None
        self.ssl_context = insecure_ssl_context()
        # Connect to exactly one transport: STARTTLS on the c2s port or
        # direct TLS on the XEP-0368 port (slixmpp would otherwise try both).
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self.use_aiodns = False
        # Never answer subscription requests automatically (False would make
        # slixmpp *reject* them; None leaves them to the scenario).
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False

        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")

        self.messages = Inbox(self.label, "message")
        self.presences = Inbox(self.label, "presence")
        self.roster_pushes = Inbox(self.label, "roster push")
        self.stream_errors = Inbox(self.label, "stream error")
        self.sasl_failures: list[str] = []
        self.disconnect_count = 0
        self._session: Optional[asyncio.Future] = None
        self._disconnected_ev: Optional[asyncio.Event] = None
        # RFC 6120 4.9.3.19: where the last <see-other-host/> sent us, and how many
        # sessions this client has started (a followed redirect starts another).
        self.redirected_to: Optional[tuple[str, int]] = None
        self._redirect_pending = False
        self.sessions_started = 0
        self.session_events: Optional[asyncio.Event] = None

        # Every message, presence and roster push in arrival order, as (kind, stanza) with
        # kind "message", "presence" or "push": the inboxes are per kind, and some RFC rules
        # are about the order across kinds (a presence before a roster push, ...).
        self.received: list[tuple[str, Any]] = []
        self.register_handler(Callback("t-msg", MatchXPath(f"{{{CLIENT_NS}}}message"), self._recorder("message", self.messages)))
        self.register_handler(Callback("t-pres", MatchXPath(f"{{{CLIENT_NS}}}presence"), self._recorder("presence", self.presences)))
        self.register_handler(Callback("t-push", StanzaPath("iq@type=set/roster"), self._recorder("push", self.roster_pushes)))
        self.add_event_handler("stream_error", self.stream_errors.push)
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", self._on_failed_all_auth)
        self.add_event_handler("disconnected", self._on_disconnected)

    # -- event plumbing -------------------------------------------------

    def _recorder(self, kind: str, inbox: Inbox) -> Callable[[Any], None]:
        def record(stanza: Any) -> None:
            self.received.append((kind, stanza))
            inbox.push(stanza)

        return record

    def _on_stream_error(self, error: Any) -> None:
        """slixmpp follows <see-other-host/> itself (reconnect, max_redirects), but 1.17
        stores the target in `self.address`, which its connect loop no longer reads: point
        the loop at the target so the reconnect goes there."""
        target = error["see_other_host"]
        if error["condition"] != "see-other-host" or not target:
            return
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            host, port = target, "5222"
        self.redirected_to = (host.strip("[]"), int(port))
        self.custom_address = self.redirected_to
        self._redirect_pending = True

    def connected_to(self) -> str:
        """HOST:PORT of the node this client is (or was last) connected to."""
        host, port = self.custom_address or (None, None)
        return f"{host}:{port}"

    def _on_session_start(self, _event: Any) -> None:
        self._redirect_pending = False
        self.sessions_started += 1
        if self.session_events is not None:
            self.session_events.set()
        if self._session is not None and not self._session.done():
            self._session.set_result(True)

    def _on_failed_auth(self, stanza: Any) -> None:
        self.sasl_failures.append(stanza["condition"])

    def _on_failed_all_auth(self, _event: Any) -> None:
        if self._session is not None and not self._session.done():
            self._session.set_exception(LoginFailed(self.label, "SASL failed", list(self.sasl_failures)))

    def _on_disconnected(self, reason: Any) -> None:
        self.disconnect_count += 1
        if self._disconnected_ev is not None:
            self._disconnected_ev.set()
        if self._redirect_pending:
            return  # slixmpp reconnects to the other host; the login goes on there
        if self._session is not None and not self._session.done():
            self._session.set_exception(
                LoginFailed(self.label, f"disconnected before session start ({reason})", list(self.sasl_failures))
            )

    # -- lifecycle --------------------------------------------------------

    async def login(self, timeout: float = TIMEOUT) -> None:
        """Connect, negotiate TLS + SASL + bind; raise LoginFailed on failure."""
        loop = asyncio.get_running_loop()
        self._session = loop.create_future()
        self._disconnected_ev = asyncio.Event()
        if self.address is None:
            self.address = self.env.next_address()
        host, plain_port, tls_port = self.address
        port = tls_port if self.direct_tls else plain_port
        check(port, f"{self.label}: no port for direct_tls={self.direct_tls}")
        self.connect(host, port)
        try:
            await asyncio.wait_for(asyncio.shield(self._session), timeout)
        except asyncio.TimeoutError:
            self.cancel_connection_attempt()
            self.abort()
            raise LoginFailed(self.label, f"no session after {timeout:.0f}s", list(self.sasl_failures))
        except LoginFailed:
            self.cancel_connection_attempt()
            raise

    async def start(
        self,
        *,
        presence: bool = True,
        priority: Optional[int] = None,
        status: Optional[str] = None,
        roster: bool = True,
        timeout: float = TIMEOUT,
    ) -> "Client":
        """Log in, fetch the roster (so we receive roster pushes) and send
        initial presence."""
        await self.login(timeout)
        step(f"{self.label}: session started as {self.boundjid.full}")
        if roster:
            await self.fetch_roster()
        if presence:
            self.send_presence(ppriority=priority, pstatus=status)
        return self

    async def stop(self, timeout: float = TIMEOUT) -> None:
        """Close the stream cleanly (</stream:stream>) and wait for the close."""
        if not self.is_connected():
            return
        ev = self._disconnected_ev or asyncio.Event()
        self._disconnected_ev = ev
        ev.clear()
        self.disconnect(wait=timeout / 2)
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            self.abort()

    def kill_tcp(self) -> None:
        """Drop the TCP connection abruptly (RST, no closing stream tag)."""
        transport = self.transport
        check(transport is not None, f"{self.label}: not connected")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.cancel_connection_attempt()
        transport.abort()

    async def wait_disconnected(self, what: str, timeout: float = TIMEOUT) -> None:
        ev = self._disconnected_ev
        check(ev is not None, f"{self.label}: never connected")
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            raise ScenarioFailure(f"{self.label}: still connected after {timeout:.0f}s: {what}")

    # -- helpers ------------------------------------------------------------

    async def iq(self, iq: Any, what: str, timeout: float = TIMEOUT) -> Any:
        """Send an IQ and return the result; IqError / timeouts become failures."""
        try:
            return await iq.send(timeout=timeout)
        except IqError as e:
            raise ScenarioFailure(f"{self.label}: {what}: got error reply {e.iq}")
        except IqTimeout:
            raise ScenarioFailure(f"{self.label}: {what}: no reply within {timeout:.0f}s")

    async def iq_error(self, iq: Any, what: str, timeout: float = TIMEOUT) -> Any:
        """Send an IQ that must fail; return the error stanza."""
        try:
            res = await iq.send(timeout=timeout)
        except IqError as e:
            return e.iq
        except IqTimeout:
            raise ScenarioFailure(f"{self.label}: {what}: no reply within {timeout:.0f}s")
        raise ScenarioFailure(f"{self.label}: {what}: expected an error, got {res}")

    async def fetch_roster(self, ver: Optional[str] = None) -> Any:
        iq = self.Iq()
        iq["type"] = "get"
        iq.enable("roster")
        if ver is not None:
            iq["roster"]["ver"] = ver
        return await self.iq(iq, "roster get")

    async def roster_items(self) -> dict[str, dict]:
        res = await self.fetch_roster()
        return {str(j): dict(item) for j, item in res["roster"]["items"].items()}

    async def roster_set(self, jid: str, name: Optional[str] = None, groups: Iterable[str] = (), remove: bool = False) -> Any:
        iq = self.Iq()
        iq["type"] = "set"
        item: dict[str, Any] = {"groups": list(groups)}
        if name is not None:
            item["name"] = name
        if remove:
            item["subscription"] = "remove"
        iq["roster"]["items"] = {jid: item}
        return await self.iq(iq, f"roster set {jid} (remove={remove})")

    async def ping(self, to: Optional[str] = None, timeout: float = TIMEOUT) -> None:
        iq = self.Iq()
        iq["type"] = "get"
        iq["to"] = to or self.boundjid.domain
        iq.enable("ping")
        res = await self.iq(iq, f"XEP-0199 ping to {iq['to']}", timeout)
        check(res["type"] == "result", f"{self.label}: ping reply is not a result: {res}")

    def sub(self, to: str, ptype: str) -> str:
        """Send a subscription-related presence (subscribe, subscribed, ...);
        returns its id."""
        pres = self.Presence()
        pres["to"] = to
        pres["type"] = ptype
        pres["id"] = self.new_id()
        pres.send()
        return pres["id"]

    def msg(self, to: str, body: str, mtype: str = "chat", **extra: Any) -> Any:
        m = self.Message()
        m["to"] = to
        m["type"] = mtype
        m["body"] = body
        for k, v in extra.items():
            m[k] = v
        m.send()
        return m

    async def wait_push(self, jid: str, what: str, **expect: Any) -> dict:
        """Wait for a roster push about `jid` whose item matches `expect`
        (keys: subscription, ask, name, groups)."""

        def match(iq: Any) -> bool:
            items = iq["roster"]["items"]
            if JID(jid) not in items and jid not in items:
                return False
            item = items[JID(jid)] if JID(jid) in items else items[jid]
            return all(_item_field(item, k) == v for k, v in expect.items())

        iq = await self.roster_pushes.wait(match, f"{what} (push for {jid} with {expect})")
        # RFC 6121 2.1.6: a roster push carries exactly one item and comes
        # from the user's bare JID (or has no 'from').
        items = iq["roster"]["items"]
        check(len(items) == 1, f"{self.label}: roster push must contain exactly one item: {iq}")
        frm = iq["from"]
        check(
            not frm or frm.full == self.boundjid.bare or frm.full == "",
            f"{self.label}: roster push 'from' must be absent or our bare JID, got {frm}",
        )
        return dict(list(items.values())[0])


def _item_field(item: Any, key: str) -> Any:
    if key == "ask":
        return item["ask"] or None
    if key == "groups":
        return sorted(item["groups"])
    if key == "name":
        return item["name"] or None
    return item[key]


def is_from(stanza: Any, jid: str) -> bool:
    """`jid` may be bare (match any resource) or full (match exactly)."""
    frm = stanza["from"]
    j = JID(jid)
    if j.resource:
        return frm.full == j.full
    return frm.bare == j.bare


def presence_pred(frm: str, ptype: Optional[str] = None) -> Callable[[Any], bool]:
    """Match a presence from `frm`; ptype None/'available' = available."""

    def pred(p: Any) -> bool:
        if not is_from(p, frm):
            return False
        t = p["type"]
        if ptype in (None, "available"):
            return t in ("", "available") or t in ("chat", "away", "xa", "dnd")
        return t == ptype

    return pred


def message_pred(frm: str, body: str) -> Callable[[Any], bool]:
    return lambda m: is_from(m, frm) and m["body"] == body


# --------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------


async def close_all(clients: Iterable[Client]) -> None:
    for c in clients:
        try:
            if c.is_connected():
                await c.stop(timeout=4)
        except Exception:
            pass


def run_scenario(fn: Callable[[Env], Any], env: Env, overall_timeout: float) -> int:
    """Run one async scenario with an overall deadline; return exit code."""

    async def main() -> None:
        await asyncio.wait_for(fn(env), overall_timeout)

    try:
        asyncio.run(main())
    except ScenarioFailure as e:
        print(f"SCENARIO FAILED: {e}", flush=True)
        return 1
    except LoginFailed as e:
        print(f"SCENARIO FAILED: {e}", flush=True)
        return 1
    except asyncio.TimeoutError:
        print(f"SCENARIO FAILED: overall timeout of {overall_timeout:.0f}s exceeded", flush=True)
        traceback.print_exc()
        return 1
    except Exception:
        print("SCENARIO FAILED with an unexpected exception:", flush=True)
        traceback.print_exc()
        return 1
    print("SCENARIO PASSED", flush=True)
    return 0


def setup_logging(debug: bool) -> None:
    level = logging.DEBUG if debug or os.environ.get("POOLXMPP_PY_DEBUG") else logging.WARNING
    logging.basicConfig(
        level=level,
        stream=sys.stdout,
        format="%(relativeCreated)8.0fms %(levelname)s %(name)s: %(message)s",
    )


__all__ = [
    "Client",
    "Env",
    "Inbox",
    "JID",
    "LoginFailed",
    "QUIET",
    "ROSTER_NS",
    "STANZAS_NS",
    "ScenarioFailure",
    "TIMEOUT",
    "base_arg_parser",
    "check",
    "close_all",
    "is_from",
    "message_pred",
    "note",
    "presence_pred",
    "run_scenario",
    "setup_logging",
    "slixmpp",
    "step",
]
