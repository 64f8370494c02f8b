#!/usr/bin/env python3
"""End-to-end XMPP scenarios for poolxmpp, driven by slixmpp.

Usage (normally invoked by the Rust harness in tests/support):

    python tests/py/scenarios.py SCENARIO --host 127.0.0.1 --port P \
        [--tls-port T] --domain localhost [--domain2 example.test] \
        --account alice@localhost=secret ... [--phase N]

Exit status 0 means every assertion held; anything else is a failure and the
output explains which expectation (with its RFC section) was not met.

Accounts expected from the harness (see tests/support/mod.rs):
    alice, bob, carol, eve  @ --domain
    dave                    @ --domain2
"""

from __future__ import annotations

import asyncio
import calendar
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any, Awaitable, Callable, Optional

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from xmpptest import (
    JID,
    QUIET,
    STANZAS_NS,
    TIMEOUT,
    Client,
    Env,
    Inbox,
    LoginFailed,
    ScenarioFailure,
    base_arg_parser,
    check,
    close_all,
    is_from,
    message_pred,
    note,
    presence_pred,
    run_scenario,
    setup_logging,
    step,
)

SCENARIOS: dict[str, Callable[[Env], Awaitable[None]]] = {}


def scenario(name: str):
    def register(fn):
        SCENARIOS[name] = fn
        return fn

    return register


# --------------------------------------------------------------------------
# Reusable protocol sequences
# --------------------------------------------------------------------------


async def expect_login_failure(env: Env, jid: str, password: str, mech: str, what: str) -> None:
    """RFC 6120 6.5.10 / 6.4.5: bad credentials -> SASL <not-authorized/>."""
    c = Client(env, jid, password, mech=mech, label=f"{jid}[{mech}, {what}]")
    try:
        await c.login()
    except LoginFailed as e:
        offered = sorted(c.plugin["feature_mechanisms"].mech_list or [])
        check(
            mech in offered,
            f"{c.label}: server did not offer {mech} (offered {offered})",
        )
        check(
            e.conditions == ["not-authorized"],
            f"{c.label}: RFC 6120 6.4.5: expected exactly one SASL failure <not-authorized/>, "
            f"got {e.conditions} ({e.reason})",
        )
        step(f"{c.label}: refused with <not-authorized/> as expected")
        return
    finally:
        await close_all([c])
    raise ScenarioFailure(f"{c.label}: login unexpectedly succeeded as {c.boundjid}")


async def login_with(env: Env, jid: str, mech: str, direct_tls: bool = False) -> None:
    label = f"{jid}[{mech}{', direct TLS' if direct_tls else ''}]"
    c = Client(env, jid, mech=mech, direct_tls=direct_tls, label=label)
    try:
        try:
            await c.login()
        except LoginFailed:
            offered = sorted(c.plugin["feature_mechanisms"].mech_list or [])
            check(mech in offered, f"{label}: server did not offer {mech} (offered {offered})")
            raise
        used = c.plugin["feature_mechanisms"].mech.name
        check(used == mech, f"{label}: expected to authenticate with {mech}, slixmpp used {used}")
        check(
            c.boundjid.bare == JID(jid).bare and c.boundjid.resource,
            f"{label}: RFC 6120 7.6.1: bound JID must be <{jid}/resource>, got {c.boundjid}",
        )
        await c.ping()
        step(f"{label}: logged in as {c.boundjid.full}, ping ok")
    finally:
        await close_all([c])


async def subscribe_handshake(a: Client, b: Client) -> None:
    """Full RFC 6121 section 3.1 handshake in both directions between two
    online, roster-interested clients, asserting every push and presence.
    Ends with subscription='both' on both rosters."""
    a_bare, b_bare = a.boundjid.bare, b.boundjid.bare

    # a -> subscribe -> b
    first_id = a.sub(b_bare, "subscribe")
    await a.wait_push(b_bare, "RFC 6121 3.1.2: user's server pushes pending-out item", subscription="none", ask="subscribe")
    req = await b.presences.wait(presence_pred(a_bare, "subscribe"), f"RFC 6121 3.1.3: subscription request from {a_bare}")
    check(req["from"].full == a_bare, f"RFC 6121 3.1.2: subscribe must be stamped with the user's bare JID, got from={req['from']}")

    # b -> subscribed -> a
    b.sub(a_bare, "subscribed")
    await b.wait_push(a_bare, "RFC 6121 3.1.5: contact's server pushes subscription=from", subscription="from")
    ok = await a.presences.wait(presence_pred(b_bare, "subscribed"), f"RFC 6121 3.1.6: 'subscribed' from {b_bare}")
    check(ok["from"].full == b_bare, f"'subscribed' must come from the contact's bare JID, got {ok['from']}")
    await a.wait_push(b_bare, "RFC 6121 3.1.6: user's server pushes subscription=to", subscription="to", ask=None)
    await a.presences.wait(presence_pred(b.boundjid.full), f"RFC 6121 3.1.5: current presence of {b.boundjid.full} after approval")

    # b -> subscribe -> a
    b.sub(a_bare, "subscribe")
    await b.wait_push(a_bare, "RFC 6121 3.1.2: pending-out push on the reverse subscription", subscription="from", ask="subscribe")
    await a.presences.wait(presence_pred(b_bare, "subscribe"), f"RFC 6121 3.1.3: subscription request from {b_bare}")

    # a -> subscribed -> b
    a.sub(b_bare, "subscribed")
    await a.wait_push(b_bare, "RFC 6121 3.1.5: push subscription=both", subscription="both")
    await b.presences.wait(presence_pred(a_bare, "subscribed"), f"RFC 6121 3.1.6: 'subscribed' from {a_bare}")
    await b.wait_push(a_bare, "RFC 6121 3.1.6: push subscription=both", subscription="both", ask=None)
    await b.presences.wait(presence_pred(a.boundjid.full), f"RFC 6121 3.1.5: current presence of {a.boundjid.full}")

    for me, other in ((a, b_bare), (b, a_bare)):
        items = await me.roster_items()
        check(other in items, f"{me.label}: roster must contain {other}: {items}")
        check(
            items[other]["subscription"] == "both",
            f"{me.label}: roster item {other} must have subscription=both: {items[other]}",
        )
    # A request is delivered once. (A second copy can appear when the request
    # races with the contact's initial presence and is also re-sent from storage.)
    dups = b.presences.all(lambda p: p["type"] == "subscribe" and p["id"] == first_id)
    if dups:
        note(f"{b.label}: subscription request {first_id} from {a_bare} was delivered {1 + len(dups)} times")
    step(f"mutual subscription {a_bare} <-> {b_bare} established")


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


@scenario("login")
async def sc_login(env: Env) -> None:
    alice = env.jid("alice")
    for mech in ("SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"):
        await login_with(env, alice, mech)
    if env.tls_port:
        # XEP-0368: direct TLS port, same SASL.
        await login_with(env, alice, "SCRAM-SHA-256", direct_tls=True)
        await login_with(env, alice, "PLAIN", direct_tls=True)
    # Non-ASCII password (SASLprep, RFC 4013) through both mechanism families.
    await login_with(env, env.jid("eve"), "SCRAM-SHA-256")
    await login_with(env, env.jid("eve"), "PLAIN")

    await expect_login_failure(env, alice, "wrong-password", "SCRAM-SHA-256", "wrong password")
    await expect_login_failure(env, alice, "wrong-password", "SCRAM-SHA-1", "wrong password")
    await expect_login_failure(env, alice, "wrong-password", "PLAIN", "wrong password")
    await expect_login_failure(env, env.jid("nobody"), "whatever", "PLAIN", "unknown user")

    # Failures must not affect later, correct logins.
    await login_with(env, alice, "SCRAM-SHA-256")


@scenario("roster")
async def sc_roster(env: Env) -> None:
    alice, bob, carol = env.jid("alice"), env.jid("bob"), env.jid("carol")
    r1 = Client(env, alice + "/r1")
    r2 = Client(env, alice + "/r2")
    try:
        await r1.start()
        await r2.start()
        initial = await r1.fetch_roster()
        versioning = "rosterver" in r1.features
        ver0 = initial["roster"]["ver"] if versioning else None
        step(f"roster versioning advertised: {versioning} (initial ver={ver0!r})")
        if versioning:
            check(
                initial.xml.find("{jabber:iq:roster}query") is not None and initial["roster"].xml.get("ver") is not None,
                f"RFC 6121 2.6.3: a server that supports versioning MUST include 'ver' in the roster result: {initial}",
            )

        # Add: both interested resources get the push (RFC 6121 2.3.2 / 2.1.6).
        await r1.roster_set(bob, name="Bob", groups=["Friends"])
        for r in (r1, r2):
            item = await r.wait_push(bob, "RFC 6121 2.3.2: push after roster add", subscription="none", name="Bob", groups=["Friends"])
            check(item["subscription"] == "none", f"{r.label}: new item must have subscription=none: {item}")
        items = await r2.roster_items()
        check(bob in items and items[bob]["name"] == "Bob", f"{r2.label}: roster get must show {bob} named Bob: {items}")
        check(list(items[bob]["groups"]) == ["Friends"], f"{r2.label}: group must be Friends: {items[bob]}")

        # Second item, then an update from the other resource.
        await r2.roster_set(carol, name="Carol")
        for r in (r1, r2):
            await r.wait_push(carol, "push after adding a second item", name="Carol")
        await r2.roster_set(bob, name="Bobby", groups=["Friends", "Work"])
        pushes_ver: Optional[str] = None
        for r in (r1, r2):
            await r.wait_push(bob, "RFC 6121 2.4: push after roster update", name="Bobby", groups=["Friends", "Work"])
        if versioning:
            # The push itself carries the new version (RFC 6121 2.6.3).
            items = await r1.fetch_roster()
            pushes_ver = items["roster"]["ver"]
            check(pushes_ver and pushes_ver != ver0, f"RFC 6121 2.6: version must change after modifications ({ver0!r} -> {pushes_ver!r})")

        # Remove (RFC 6121 2.5).
        await r1.roster_set(carol, remove=True)
        for r in (r1, r2):
            await r.wait_push(carol, "RFC 6121 2.5.2: push with subscription=remove", subscription="remove")
        items = await r1.roster_items()
        check(carol not in items, f"{r1.label}: removed item still in roster: {items}")
        check(bob in items, f"{r1.label}: unrelated item disappeared: {items}")

        # A roster set with two items is a bad request (RFC 6121 2.3.3).
        iq = r1.Iq()
        iq["type"] = "set"
        iq["roster"]["items"] = {env.jid("x1"): {"name": "x1"}, env.jid("x2"): {"name": "x2"}}
        err = await r1.iq_error(iq, "roster set with two items")
        check(err["error"]["condition"] == "bad-request", f"RFC 6121 2.3.3: two-item roster set must be <bad-request/>, got {err}")

        if versioning:
            current = (await r1.fetch_roster())["roster"]["ver"]
            # Same version -> empty result, changes (none) via pushes (2.6.3).
            res = await r1.fetch_roster(ver=current)
            query = res.xml.find("{jabber:iq:roster}query")
            if query is not None:
                got = res["roster"]["items"]
                check(
                    JID(bob) in got,
                    f"RFC 6121 2.6.3: roster get with the current version must return an empty result "
                    f"or the complete roster, got {res}",
                )
            # Stale version -> the client must learn about the changes either as
            # a full roster or as pushes (2.6.3).
            r2.roster_pushes.clear()
            res = await r2.fetch_roster(ver=ver0 or "")
            if res.xml.find("{jabber:iq:roster}query") is not None:
                got = {str(j) for j in res["roster"]["items"]}
                check(bob in got and carol not in got, f"roster get with stale version returned wrong roster: {got}")
            else:
                await r2.wait_push(bob, "RFC 6121 2.6.3: changes since stale version as pushes", name="Bobby")
            step("roster versioning behaves")

        # Final cleanup of bob as well; roster is empty again.
        await r2.roster_set(bob, remove=True)
        for r in (r1, r2):
            await r.wait_push(bob, "push for removal of bob", subscription="remove")
        items = await r2.roster_items()
        check(bob not in items and carol not in items, f"roster should be empty of bob/carol: {items}")
    finally:
        await close_all([r1, r2])


@scenario("subscription")
async def sc_subscription(env: Env) -> None:
    a = Client(env, env.jid("alice") + "/a")
    b = Client(env, env.jid("bob") + "/b")
    try:
        await a.start()
        await b.start()
        await subscribe_handshake(a, b)
        a_bare, b_bare = a.boundjid.bare, b.boundjid.bare

        # Already subscribed: the contact's server auto-replies 'subscribed'
        # on the contact's behalf and does not bother the contact (RFC 6121
        # 3.1.3); the user's server then ignores that 'subscribed' because
        # nothing is pending (3.1.6), so the roster stays 'both'.
        redundant = a.sub(b_bare, "subscribe")
        await b.presences.expect_none(
            lambda p: presence_pred(a_bare, "subscribe")(p) and p["id"] == redundant,
            "RFC 6121 3.1.3: redundant subscribe must not be delivered to the contact",
        )
        items = await a.roster_items()
        check(items[b_bare]["subscription"] == "both", f"redundant subscribe changed the roster: {items[b_bare]}")

        # a unsubscribes from b's presence (RFC 6121 3.3).
        a.presences.clear()
        a.sub(b_bare, "unsubscribe")
        await a.wait_push(b_bare, "RFC 6121 3.3.2: push after unsubscribe", subscription="from")
        await b.presences.wait(presence_pred(a_bare, "unsubscribe"), "RFC 6121 3.3.3: unsubscribe delivered to contact")
        await b.wait_push(a_bare, "RFC 6121 3.3.3: contact's push after unsubscribe", subscription="to")
        await a.presences.should(presence_pred(b.boundjid.full, "unavailable"), "RFC 6121 3.3.3: unavailable presence from the contact's resources")

        # a cancels b's subscription to a (RFC 6121 3.2).
        b.presences.clear()
        a.sub(b_bare, "unsubscribed")
        await a.wait_push(b_bare, "RFC 6121 3.2.2: push after cancelling", subscription="none")
        await b.presences.wait(presence_pred(a_bare, "unsubscribed"), "RFC 6121 3.2.3: 'unsubscribed' delivered")
        await b.wait_push(a_bare, "RFC 6121 3.2.3: push after cancellation", subscription="none")
        await b.presences.wait(presence_pred(a.boundjid.full, "unavailable"), "RFC 6121 3.2.2: unavailable presence from the user's resources")

        for me, other in ((a, b_bare), (b, a_bare)):
            items = await me.roster_items()
            check(other in items, f"{me.label}: item {other} must remain after unsubscription: {items}")
            check(items[other]["subscription"] == "none", f"{me.label}: {other} must be subscription=none: {items[other]}")

        # With no subscription any more, presence changes are not broadcast.
        a.send_presence(pstatus="nobody should see this")
        await b.presences.expect_none(presence_pred(a.boundjid.full), "RFC 6121 4.4.2: broadcast only to subscribers")

        # Pre-existing roster item + subscription request from an unknown
        # contact: subscribe to someone who is offline; the request is stored
        # and delivered when they come online (RFC 6121 3.1.3).
        carol = env.jid("carol")
        a.sub(carol, "subscribe")
        await a.wait_push(carol, "RFC 6121 3.1.2: pending-out push", subscription="none", ask="subscribe")
        c = Client(env, carol + "/c")
        try:
            await c.start()
            await c.presences.wait(presence_pred(a_bare, "subscribe"), "RFC 6121 3.1.3: stored subscription request delivered at login")
            c.sub(a_bare, "unsubscribed")  # deny
            await a.presences.wait(presence_pred(carol, "unsubscribed"), "RFC 6121 3.2: denial delivered")
            await a.wait_push(carol, "push after denial", subscription="none", ask=None)
        finally:
            await close_all([c])
    finally:
        await close_all([a, b])


@scenario("presence")
async def sc_presence(env: Env) -> None:
    alice, bob, carol = env.jid("alice"), env.jid("bob"), env.jid("carol")
    a = Client(env, alice + "/a")
    b1 = Client(env, bob + "/b1")
    c = Client(env, carol + "/c")
    extra: list[Client] = []
    try:
        await a.start()
        await b1.start()
        await c.start()
        await subscribe_handshake(a, b1)

        # Presence probe at login (RFC 6121 4.2.3 / 4.3): alice reconnects and
        # gets bob's current presence.
        await a.stop()
        a = Client(env, alice + "/a2")
        await a.start()
        await a.presences.wait(presence_pred(b1.boundjid.full), "RFC 6121 4.3.2: current presence of contacts after initial presence")
        await b1.presences.wait(presence_pred(a.boundjid.full), "RFC 6121 4.2.2: initial presence broadcast to subscribers")

        # Presence update broadcast to subscribers only (RFC 6121 4.4.2).
        a.send_presence(pshow="away", pstatus="lunch")
        p = await b1.presences.wait(lambda p: is_from(p, a.boundjid.full) and p["status"] == "lunch", "RFC 6121 4.4.2: presence update broadcast")
        check(p["show"] == "away", f"presence <show/> not preserved: {p}")
        await c.presences.expect_none(presence_pred(alice), "RFC 6121 4.4.2: non-subscriber must not receive alice's presence")

        # A second resource of bob comes online.
        b2 = Client(env, bob + "/b2")
        extra.append(b2)
        await b2.start(status="second")
        p = await a.presences.wait(presence_pred(b2.boundjid.full), "RFC 6121 4.2.2: initial presence of a new resource")
        check(p["status"] == "second", f"status not preserved: {p}")
        await b1.presences.wait(presence_pred(b2.boundjid.full), "RFC 6121 4.2.2: initial presence broadcast to the user's other resources")
        await b2.presences.wait(presence_pred(a.boundjid.full), "RFC 6121 4.2.3: contacts' presence delivered to the new resource")

        # Clean close (</stream:stream>) without unavailable presence.
        await b2.stop()
        await a.presences.wait(presence_pred(b2.boundjid.full, "unavailable"), "RFC 6121 4.6.3: unavailable after clean stream close")
        await b1.presences.wait(presence_pred(b2.boundjid.full, "unavailable"), "unavailable to the user's other resources")

        # Abrupt close: TCP RST, no closing tag.
        b3 = Client(env, bob + "/b3")
        extra.append(b3)
        await b3.start()
        await a.presences.wait(presence_pred(b3.boundjid.full), "available from b3")
        b3.kill_tcp()
        await a.presences.wait(presence_pred(b3.boundjid.full, "unavailable"), "RFC 6121 4.6.3: unavailable after TCP reset")

        # Abrupt close: plain FIN without closing tag.
        b4 = Client(env, bob + "/b4")
        extra.append(b4)
        await b4.start()
        await a.presences.wait(presence_pred(b4.boundjid.full), "available from b4")
        b4.cancel_connection_attempt()
        b4.transport.close()
        await a.presences.wait(presence_pred(b4.boundjid.full, "unavailable"), "RFC 6121 4.6.3: unavailable after TCP close without stream close")

        # Explicit unavailable while staying connected (RFC 6121 4.5).
        b1.send_presence(ptype="unavailable", pstatus="gone")
        p = await a.presences.wait(presence_pred(b1.boundjid.full, "unavailable"), "RFC 6121 4.5.2: explicit unavailable broadcast")
        check(p["status"] == "gone", f"status of unavailable presence not preserved: {p}")
        await b1.ping()
        await c.presences.expect_none(presence_pred(bob), "non-subscriber must not receive bob's presence", duration=0.1)
    finally:
        await close_all([a, b1, c] + extra)


@scenario("messages")
async def sc_messages(env: Env) -> None:
    alice, bob = env.jid("alice"), env.jid("bob")
    a = Client(env, alice + "/a")
    b1 = Client(env, bob + "/b1")
    b2 = Client(env, bob + "/b2")
    try:
        await a.start()
        await b1.start(priority=5)
        await b2.start(priority=1)
        # Each stream is processed in order: after its ping, each resource's initial
        # presence has been; in a pool, give the other nodes' mirrors a moment too, or a
        # loaded machine can route the first message while only b2 is known available.
        await b1.ping()
        await b2.ping()
        await a.ping()
        await asyncio.sleep(0.2)

        # Bare JID -> highest-priority resource only (RFC 6121 8.5.2.1.1).
        a.msg(bob, "to-bare-1")
        m = await b1.messages.wait(message_pred(alice, "to-bare-1"), "RFC 6121 8.5.2.1.1: bare-JID chat to the highest-priority resource")
        check(m["from"].full == a.boundjid.full, f"RFC 6120 8.1.2.1: 'from' must be the sender's full JID, got {m['from']}")
        check(m["to"].bare == bob, f"'to' must be preserved, got {m['to']}")
        await b2.messages.expect_none(message_pred(alice, "to-bare-1"), "bare-JID message must not go to the lower-priority resource")

        # Full JID -> exactly that resource (RFC 6121 8.5.3.1).
        a.msg(b2.boundjid.full, "to-full-b2")
        await b2.messages.wait(message_pred(alice, "to-full-b2"), "RFC 6121 8.5.3.1: full-JID message to that resource")
        a.msg(b1.boundjid.full, "to-full-b1", mtype="normal")
        await b1.messages.wait(message_pred(alice, "to-full-b1"), "RFC 6121 8.5.3.1: full-JID normal message")
        await b1.messages.expect_none(message_pred(alice, "to-full-b2"), "full-JID message for b2 must not reach b1", duration=0.1)
        await b2.messages.expect_none(message_pred(alice, "to-full-b1"), "full-JID message for b1 must not reach b2", duration=0.1)

        # Priority change flips the bare-JID target.
        b2.send_presence(ppriority=10)
        await b2.ping()
        await asyncio.sleep(0.3)
        a.msg(bob, "to-bare-2")
        await b2.messages.wait(message_pred(alice, "to-bare-2"), "bare-JID message after b2 raised its priority to 10")
        await b1.messages.expect_none(message_pred(alice, "to-bare-2"), "bare-JID message must not go to the now lower-priority b1")

        # Payload fidelity: XML special characters and non-ASCII text.
        tricky = "<tag> & 'apos' \"quot\" ünïcödé 🎉 ]]> &amp;"
        a.msg(b1.boundjid.full, tricky)
        await b1.messages.wait(message_pred(alice, tricky), "body with XML special characters preserved")

        # In-order processing (RFC 6120 10.1): a burst arrives complete and in order.
        burst = [f"burst-{i:03d}" for i in range(100)]
        for body in burst:
            a.msg(b1.boundjid.full, body)
        got = []
        for body in burst:
            m = await b1.messages.wait(lambda m: is_from(m, alice) and m["body"].startswith("burst-"), f"burst message (have {len(got)} of 100)")
            got.append(m["body"])
        check(got == burst, f"RFC 6120 10.1: burst delivered out of order: {got}")

        # IQ routing to a full JID (answered by slixmpp's XEP-0199 plugin).
        await a.ping(b1.boundjid.full)
        # IQ to a resource that is not online -> service-unavailable (RFC 6121 8.5.3.2.1).
        iq = a.Iq()
        iq["type"] = "get"
        iq["to"] = bob + "/no-such-resource"
        iq.enable("ping")
        err = await a.iq_error(iq, "ping to an offline full JID")
        check(err["error"]["condition"] == "service-unavailable", f"RFC 6121 8.5.3.2.1: expected <service-unavailable/>, got {err}")

        # IQ requests nobody understands: the server answers for itself and, for
        # a bare JID, on behalf of the account (RFC 6120 8.4, RFC 6121 8.5.2.1.3 / 8.5.1).
        for target in (env.domain, bob, env.jid("nobody")):
            iq = a.Iq()
            iq["type"] = "get"
            iq["to"] = target
            iq.xml.append(ET.Element("{urn:example:unknown}query"))
            err = await a.iq_error(iq, f"IQ with an unknown payload to {target}")
            check(
                err["error"]["condition"] in ("service-unavailable", "feature-not-implemented"),
                f"RFC 6120 8.4: unknown IQ payload to {target} must get <service-unavailable/> or "
                f"<feature-not-implemented/>, got {err}",
            )
            check(err["id"] == iq["id"], f"IQ error must carry the request id: {err}")

        # Message to an account that does not exist: silently ignored or
        # <service-unavailable/> (RFC 6121 8.5.1).
        a.msg(env.jid("nobody"), "to-nobody")
        await asyncio.sleep(QUIET)
        errors = a.messages.all(lambda m: m["type"] == "error")
        for e in errors:
            check(e["error"]["condition"] == "service-unavailable", f"RFC 6121 8.5.1: message to unknown user: error must be <service-unavailable/>: {e}")

        # A full JID whose resource is not there (RFC 6121 8.5.3.2.1): chat goes on as if to
        # the bare JID; normal and headline are refused with <service-unavailable/>; an
        # error is dropped.
        a.messages.clear()
        a.msg(bob + "/gone", "absent-chat")
        # (b2 has the highest priority by now.)
        await b2.messages.wait(message_pred(alice, "absent-chat"), "RFC 6121 8.5.3.2.1: chat to an absent resource goes to the bare JID")
        for mtype in ("normal", "headline"):
            a.msg(bob + "/gone", f"absent-{mtype}", mtype=mtype, id=f"absent-{mtype}")
            err = await a.messages.wait(lambda m: m["type"] == "error" and m["id"] == f"absent-{mtype}", f"RFC 6121 8.5.3.2.1: error for a {mtype} message to an absent resource")
            check(err["error"]["condition"] == "service-unavailable", f"RFC 6121 8.5.3.2.1: expected <service-unavailable/>, got {err}")
            for b in (b1, b2):
                await b.messages.expect_none(message_pred(alice, f"absent-{mtype}"), f"a {mtype} message to an absent resource must not be delivered", duration=0.1)
        # An error message to a bare JID is dropped even with resources online (8.5.2.1.1).
        a.msg(bob, "bare-error", mtype="error")
        await b1.messages.expect_none(message_pred(alice, "bare-error"), "RFC 6121 8.5.2.1.1: an error message to a bare JID must be ignored", duration=0.3)
        await b2.messages.expect_none(message_pred(alice, "bare-error"), "RFC 6121 8.5.2.1.1: an error message to a bare JID must be ignored", duration=0.1)

        # Sender-supplied 'from' is never trusted (RFC 6120 8.1.2.1): the
        # server either rewrites it to the sender's full JID or closes the
        # stream with <invalid-from/>.
        spoof = a.Message()
        spoof["to"] = b1.boundjid.full
        spoof["from"] = env.jid("mallory") + "/evil"
        spoof["type"] = "chat"
        spoof["body"] = "spoofed"
        spoof.send()
        await asyncio.sleep(QUIET)
        got = b1.messages.all(lambda m: m["body"] == "spoofed")
        errs = a.stream_errors.all(lambda e: True)
        if got:
            for m in got:
                check(m["from"].full == a.boundjid.full, f"RFC 6120 8.1.2.1: spoofed 'from' was delivered unchanged: {m}")
        else:
            check(
                any(e["condition"] == "invalid-from" for e in errs),
                "RFC 6120 8.1.2.1: message with a forged 'from' was neither delivered with the sender's "
                f"real JID nor answered by an <invalid-from/> stream error (stream errors: {errs})",
            )
        await b1.ping()
    finally:
        await close_all([a, b1, b2])


@scenario("offline")
async def sc_offline(env: Env) -> None:
    alice, bob = env.jid("alice"), env.jid("bob")
    a = Client(env, alice + "/a")
    b: Optional[Client] = None
    try:
        await a.start()
        bodies = ["offline-1", "offline-2 <&>", "offline-3 ünï"]
        for body in bodies:
            a.msg(bob, body)
        a.msg(bob, "offline-normal", mtype="normal")
        # RFC 6121 8.5.2.2.1 / XEP-0160: headlines are not stored.
        a.msg(bob, "offline-headline", mtype="headline")
        await a.ping()
        await asyncio.sleep(0.5)
        errs = a.messages.all(lambda m: m["type"] == "error")
        check(not errs, f"offline messages to an existing account must be stored, not bounced: {errs}")

        b = Client(env, bob + "/b")
        await b.start(presence=False)
        # XEP-0160: stored messages are delivered after initial presence.
        await b.messages.expect_none(lambda m: True, "XEP-0160: no offline messages before initial presence")
        b.send_presence()
        got = []
        for body in bodies + ["offline-normal"]:
            m = await b.messages.wait(message_pred(alice, body), f"XEP-0160 / RFC 6121 8.5.2.2: offline message {body!r} after initial presence")
            got.append(m)
        order = [m["body"] for m in got]
        check(order[: len(bodies)] == bodies, f"offline chat messages arrived out of order: {order}")
        check(got[0]["from"].full == a.boundjid.full, f"offline message 'from' must be the sender's full JID: {got[0]['from']}")
        missing_delay = [m["body"] for m in got if m.xml.find("{urn:xmpp:delay}delay") is None]
        if missing_delay:
            note(f"XEP-0160 SHOULD add a XEP-0203 <delay/> to offline messages; missing on {missing_delay}")
        await b.messages.expect_none(message_pred(alice, "offline-headline"), "RFC 6121 8.5.2.2.1: headline messages must not be stored offline")
        await b.stop()

        # Delivered once only.
        b = Client(env, bob + "/b-again")
        await b.start()
        await b.messages.expect_none(lambda m: m["body"] and m["body"].startswith("offline"), "offline messages must be removed once delivered")
    finally:
        await close_all([a] + ([b] if b else []))


@scenario("offline_quota")
async def sc_offline_quota(env: Env) -> None:
    """The harness configures offline_quota = 3: the 4th and 5th message to an
    offline user bounce with an error instead of being stored."""
    quota = 3
    alice, bob = env.jid("alice"), env.jid("bob")
    a = Client(env, alice + "/a")
    b = Client(env, bob + "/b")
    try:
        await a.start()
        sent = [a.msg(bob, f"quota-{i}") for i in range(quota + 2)]
        await a.ping()
        await asyncio.sleep(0.5)
        errors = a.messages.all(lambda m: m["type"] == "error")
        bounced = {e["id"] for e in errors}
        over = {m["id"] for m in sent[quota:]}
        check(
            bounced == over,
            f"with offline_quota={quota}, exactly the messages beyond the quota must bounce; "
            f"bounced ids {sorted(bounced)}, expected {sorted(over)}",
        )
        for e in errors:
            check(
                e["error"]["condition"] in ("resource-constraint", "service-unavailable"),
                f"over-quota bounce should be <resource-constraint/> or <service-unavailable/>: {e}",
            )
        await b.start()
        for i in range(quota):
            await b.messages.wait(message_pred(alice, f"quota-{i}"), f"stored message quota-{i}")
        await b.messages.expect_none(
            lambda m: m["body"] in (f"quota-{quota}", f"quota-{quota + 1}"),
            "messages beyond the quota must not be stored",
        )
    finally:
        await close_all([a, b])


@scenario("conflict")
async def sc_conflict(env: Env) -> None:
    alice, bob = env.jid("alice"), env.jid("bob")
    old = Client(env, alice + "/same", label="alice/same (old)")
    new = Client(env, alice + "/same", label="alice/same (new)")
    b = Client(env, bob + "/b")
    try:
        await b.start()
        await old.start()
        check(old.boundjid.full == alice + "/same", f"server must honour the requested resource: {old.boundjid}")
        await new.start()
        check(
            new.boundjid.full == alice + "/same",
            f"RFC 6120 7.7.2.2: new session must get the requested resource (old session replaced), got {new.boundjid}",
        )
        err = await old.stream_errors.wait(lambda e: True, "RFC 6120 7.7.2.2 / 4.9.3.3: <conflict/> stream error on the replaced session")
        check(err["condition"] == "conflict", f"replaced session must get <conflict/>, got {err['condition']}")
        await old.wait_disconnected("RFC 6120 4.9.1.1: stream must be closed after the <conflict/> error")
        check(not new.stream_errors.items, f"new session got a stream error: {new.stream_errors.items}")

        await new.ping()
        b.msg(alice + "/same", "hello new session")
        await new.messages.wait(message_pred(bob, "hello new session"), "full-JID message reaches the new session")
        await b.ping(alice + "/same")
    finally:
        await close_all([old, new, b])


@scenario("multidomain")
async def sc_multidomain(env: Env) -> None:
    d2 = env.require_domain2()
    alice, dave = env.jid("alice"), env.jid("dave", d2)
    # Accounts are per domain.
    await expect_login_failure(env, env.jid("dave"), env.password(dave), "PLAIN", "dave does not exist on the first domain")
    await expect_login_failure(env, env.jid("alice", d2), env.password(alice), "SCRAM-SHA-256", "alice does not exist on the second domain")

    a = Client(env, alice + "/a")
    d = Client(env, dave + "/d")
    try:
        await a.start()
        await d.start()
        check(d.boundjid.domain == d2, f"dave must be bound on {d2}: {d.boundjid}")
        await d.ping(d2)
        await a.ping(d2)  # the other hosted domain answers too
        await subscribe_handshake(a, d)

        a.msg(dave, "hello from A")
        m = await d.messages.wait(message_pred(alice, "hello from A"), "message from domain A to a bare JID on domain B")
        check(m["from"].full == a.boundjid.full, f"cross-domain 'from' must be the sender's full JID: {m['from']}")
        d.msg(a.boundjid.full, "hello from B")
        m = await a.messages.wait(message_pred(dave, "hello from B"), "message from domain B to a full JID on domain A")
        check(m["from"].full == d.boundjid.full, f"cross-domain 'from' must be the sender's full JID: {m['from']}")

        d.send_presence(pstatus="on B")
        await a.presences.wait(lambda p: is_from(p, d.boundjid.full) and p["status"] == "on B", "cross-domain presence broadcast")
        await d.stop()
        await a.presences.wait(presence_pred(d.boundjid.full, "unavailable"), "cross-domain unavailable")

        # Offline delivery across domains.
        a.msg(dave, "stored across domains")
        await a.ping()
        await asyncio.sleep(0.3)
        d = Client(env, dave + "/d2")
        await d.start()
        await d.messages.wait(message_pred(alice, "stored across domains"), "offline message across hosted domains")
    finally:
        await close_all([a, d])


@scenario("restart")
async def sc_restart(env: Env) -> None:
    """Phase 1 creates state, the harness restarts the server, phase 2 checks it."""
    alice, bob, carol = env.jid("alice"), env.jid("bob"), env.jid("carol")
    if env.phase == 1:
        a = Client(env, alice + "/a")
        b = Client(env, bob + "/b")
        try:
            await a.start()
            await b.start()
            await subscribe_handshake(a, b)
            await a.roster_set(bob, name="Bobby", groups=["Team"])
            await a.wait_push(bob, "push after renaming", name="Bobby", subscription="both")
            await a.roster_set(carol, name="Carol")
            await a.wait_push(carol, "push after adding carol", name="Carol")
            a.sub(carol, "subscribe")  # carol is offline: request must be stored
            await a.wait_push(carol, "pending-out push", ask="subscribe")
            await b.stop()
            await a.presences.wait(presence_pred(b.boundjid.full, "unavailable"), "bob went offline")
            a.msg(bob, "persist-1")
            a.msg(bob, "persist-2")
            a.msg(carol, "persist-carol")
            await a.ping()
            await asyncio.sleep(0.5)
            check(not a.messages.all(lambda m: m["type"] == "error"), f"offline messages bounced: {a.messages.items}")
        finally:
            await close_all([a, b])
        step("phase 1 state created")
        return

    # Phase 2, after the restart.
    await expect_login_failure(env, alice, "wrong-password", "PLAIN", "wrong password after restart")
    a = Client(env, alice + "/a")
    b = Client(env, bob + "/b")
    c = Client(env, carol + "/c")
    try:
        await a.start()
        items = await a.roster_items()
        check(bob in items, f"alice's roster lost bob across restart: {items}")
        check(items[bob]["subscription"] == "both", f"subscription state lost: {items[bob]}")
        check(items[bob]["name"] == "Bobby" and list(items[bob]["groups"]) == ["Team"], f"name/groups lost: {items[bob]}")
        check(carol in items and items[carol]["name"] == "Carol", f"carol's item lost: {items}")
        check(items[carol]["ask"] == "subscribe", f"pending-out subscription to carol lost: {items[carol]}")

        await b.start()
        for body in ("persist-1", "persist-2"):
            await b.messages.wait(message_pred(alice, body), f"offline message {body!r} kept across restart")
        order = [m["body"] for m in b.messages.items]  # anything left over
        check("persist-1" not in order and "persist-2" not in order, f"duplicate offline delivery: {order}")
        items = await b.roster_items()
        check(alice in items and items[alice]["subscription"] == "both", f"bob's roster lost alice: {items}")
        await b.presences.wait(presence_pred(a.boundjid.full), "presence of alice (subscription survived restart)")

        await c.start()
        await c.messages.wait(message_pred(alice, "persist-carol"), "offline message to carol kept across restart")
        await c.presences.wait(presence_pred(alice, "subscribe"), "stored subscription request kept across restart")
    finally:
        await close_all([a, b, c])


VCARD_NS = "vcard-temp"
VCARD_BUILD_NS = "urn:poolxmpp:plugin:vcard"


def vcard_iq(c: Client, itype: str, to: Optional[str], payload: str) -> Any:
    iq = c.Iq()
    iq["type"] = itype
    if to:
        iq["to"] = to
    iq.xml.append(ET.fromstring(payload))
    return iq


def vcard_fn(result: Any) -> Optional[str]:
    card = result.xml.find(f"{{{VCARD_NS}}}vCard")
    check(card is not None, f"XEP-0054 3.1: a vCard get returns a <vCard/>, got {result}")
    fn = card.find(f"{{{VCARD_NS}}}FN")
    return fn.text if fn is not None else None


@scenario("vcard")
async def sc_vcard(env: Env) -> None:
    """XEP-0054 through the vcard plugin. Phase 1 stores Alice's vCard and checks
    access rules and build 0.1.0; phase 2 (after a hot reload) checks the vCard is still
    served and the new build answers."""
    alice, bob = env.jid("alice"), env.jid("bob")
    a = Client(env, alice + "/vc")
    b = Client(env, bob + "/vc")
    try:
        await a.start()
        await b.start()
        build = await a.iq(vcard_iq(a, "get", env.domain, f"<query xmlns='{VCARD_BUILD_NS}'/>"), "plugin build query")
        label = build.xml.find(f"{{{VCARD_BUILD_NS}}}query/{{{VCARD_BUILD_NS}}}build")
        expected = "0.1.0" if env.phase in (None, 1) else "hot-reloaded"
        check(label is not None and label.text == expected, f"vcard build must be {expected!r}, got {build}")
        if env.phase in (None, 1):
            info = await a.plugin["xep_0030"].get_info(jid=env.domain, timeout=10)
            check("vcard-temp" in info["disco_info"]["features"], "XEP-0054 2: the server advertises vcard-temp")
            empty = await b.iq(vcard_iq(b, "get", None, f"<vCard xmlns='{VCARD_NS}'/>"), "own empty vCard")
            check(vcard_fn(empty) is None, f"an unset vCard is empty, got {empty}")
            await a.iq(vcard_iq(a, "set", None, f"<vCard xmlns='{VCARD_NS}'><FN>Alice Example</FN></vCard>"), "set own vCard")
            own = await a.iq(vcard_iq(a, "get", None, f"<vCard xmlns='{VCARD_NS}'/>"), "get own vCard")
            check(vcard_fn(own) == "Alice Example", f"own vCard round-trips, got {own}")
            err = await b.iq_error(
                vcard_iq(b, "set", alice, f"<vCard xmlns='{VCARD_NS}'><FN>Mallory</FN></vCard>"),
                "setting someone else's vCard",
            )
            check(err["error"]["condition"] == "forbidden", f"XEP-0054: only the owner sets a vCard, got {err}")
        other = await b.iq(vcard_iq(b, "get", alice, f"<vCard xmlns='{VCARD_NS}'/>"), "get alice's vCard")
        check(vcard_fn(other) == "Alice Example", f"anyone gets a stored vCard, got {other}")
    finally:
        await close_all([a, b])


# --------------------------------------------------------------------------
# Placement (issue 5): clients come in through a redirector and follow
# <see-other-host/> to their home node.
# --------------------------------------------------------------------------


@scenario("placed_login")
async def sc_placed_login(env: Env) -> None:
    """Every --account logs in through --host/--port (the redirector), follows the
    redirect, and reports where it landed as `PLACED <bare> <host:port>`."""
    clients = [Client(env, jid + "/placed") for jid in env.accounts]
    try:
        for c in clients:
            await c.start(roster=False, presence=False)
            check(c.redirected_to is not None, f"{c.label}: the redirector served it instead of redirecting")
            print(f"PLACED {c.boundjid.bare} {c.connected_to()}", flush=True)
    finally:
        await close_all(clients)


@scenario("drain")
async def sc_drain(env: Env) -> None:
    """Every --account logs in through the redirector. Clients on --drained are the
    recipients, the others senders. While the senders send numbered messages to the
    recipients, --drain-cmd drains that node: each recipient must be moved (a
    <see-other-host/>, followed) to another node, and receive every message exactly once,
    live or from offline storage after its initial presence on the new node."""
    check(env.drain_cmd and env.drained, "needs --drain-cmd and --drained")
    clients = [Client(env, jid + "/d") for jid in env.accounts]
    try:
        for c in clients:
            await c.start(roster=False)
        recipients = [c for c in clients if c.connected_to() == env.drained]
        senders = [c for c in clients if c.connected_to() != env.drained]
        check(recipients and senders, f"need users on and off {env.drained}: {[c.connected_to() for c in clients]}")
        step(f"{len(recipients)} users on the drained node, {len(senders)} senders elsewhere")
        for c in recipients:
            c.session_events = asyncio.Event()
            # What a real client does after a reconnect: initial presence again.
            c.add_event_handler("session_start", lambda _e, c=c: c.send_presence())
        sent: dict[str, list[str]] = {c.boundjid.bare: [] for c in recipients}

        async def send_all() -> None:
            for k in range(40):
                for s in senders:
                    for r in recipients:
                        body = f"drain {s.boundjid.user}->{r.boundjid.user} #{k}"
                        s.msg(r.boundjid.bare, body)
                        sent[r.boundjid.bare].append(body)
                await asyncio.sleep(0.1)

        sending = asyncio.ensure_future(send_all())
        await asyncio.sleep(1.0)
        proc = await asyncio.create_subprocess_shell(env.drain_cmd)
        check(await proc.wait() == 0, "the drain command failed")
        deadline = time.monotonic() + 60
        for r in recipients:
            while r.sessions_started < 2 or r.connected_to() == env.drained:
                check(time.monotonic() < deadline, f"{r.label} was not moved off {env.drained}")
                await asyncio.sleep(0.1)
            step(f"{r.label} moved to {r.connected_to()}")
        await sending
        for s in senders:
            await s.ping()
        for r in recipients:
            for body in sent[r.boundjid.bare]:
                await r.messages.wait(lambda m, b=body: m["body"] == b, f"{body!r} after the drain", timeout=30)
            dups = [m["body"] for m in r.messages.all(lambda m: m["body"] and m["body"].startswith("drain "))]
            check(not dups, f"{r.label}: messages delivered twice: {dups[:5]}")
        total = sum(len(v) for v in sent.values())
        print(f"DRAINED moved={len(recipients)} messages={total} lost=0 duplicated=0", flush=True)
    finally:
        await close_all(clients)


@scenario("account_removal")
async def sc_account_removal(env: Env) -> None:
    """XEP-0077 3.2 through real clients. Phase 1: carol (resources one and two) and bob
    subscribe both ways; carol's account is removed, by <remove/> from carol/one or, with
    --remove-cmd, by that command (`poolxmpp user del`). Both of carol's streams must get
    <not-authorized/> and be closed (carol/one after the IQ result); bob, online, must get
    unsubscribe and unsubscribed from carol (RFC 6121 3.3, 3.2), unavailable presence from
    carol's resources, and a roster push removing carol, and keep working. Phase 2 (the
    harness registered the name carol again, with another password): the new carol has an
    empty roster, bob's roster does not list carol, and neither hears the other's presence."""
    carol, bob = env.jid("carol"), env.jid("bob")
    if env.phase == 2:
        b = Client(env, bob + "/b")
        n = Client(env, carol + "/new", label="carol (new holder)")
        try:
            await b.start()
            await n.start()
            items = await n.roster_items()
            check(not items, f"the new holder of {carol} must start with an empty roster: {items}")
            items = await b.roster_items()
            check(carol not in items, f"bob's roster must not list the re-registered {carol}: {items}")
            b.send_presence(pstatus="after the removal")
            n.send_presence(pstatus="new holder")
            await n.presences.expect_none(lambda p: is_from(p, bob), f"presence from {bob}, a contact of the old {carol}")
            await b.presences.expect_none(
                lambda p: is_from(p, carol) and p["type"] != "unavailable", f"presence from the new {carol}"
            )
            await n.ping()
            step("the new holder inherits neither roster nor subscriptions")
        finally:
            await close_all([b, n])
        return

    c1 = Client(env, carol + "/one", label="carol/one")
    c2 = Client(env, carol + "/two", label="carol/two")
    b = Client(env, bob + "/b")
    try:
        for c in (b, c1, c2):
            await c.start()
        await subscribe_handshake(c1, b)
        await b.presences.wait(presence_pred(c2.boundjid.full), "presence of carol/two once subscribed")
        if env.remove_cmd:
            proc = await asyncio.create_subprocess_shell(env.remove_cmd)
            check(await proc.wait() == 0, f"{env.remove_cmd!r} failed")
            step("the account was removed by the command")
        else:
            iq = c1.Iq()
            iq["type"] = "set"
            iq.append(ET.fromstring("<query xmlns='jabber:iq:register'><remove/></query>"))
            res = await c1.iq(iq, "XEP-0077 3.2: <remove/>")
            check(res["type"] == "result", f"XEP-0077 3.2: <remove/> must be answered with a result: {res}")
            step("carol/one: <remove/> answered with a result")
        for c in (c1, c2):
            err = await c.stream_errors.wait(lambda e: True, f"XEP-0077 3.2: stream error to {c.label}")
            check(
                err["condition"] == "not-authorized",
                f"XEP-0077 3.2: {c.label} must get <not-authorized/>, got {err['condition']}",
            )
            await c.wait_disconnected(f"XEP-0077 3.2: {c.label}'s stream must be closed")
            step(f"{c.label}: <not-authorized/> and closed")
        await b.presences.wait(presence_pred(carol, "unsubscribe"), "RFC 6121 3.3: unsubscribe on the removed account's behalf")
        await b.presences.wait(presence_pred(carol, "unsubscribed"), "RFC 6121 3.2: unsubscribed on the removed account's behalf")
        for c in (c1, c2):
            await b.presences.wait(presence_pred(c.boundjid.full, "unavailable"), f"unavailable from {c.label}")
        await b.wait_push(carol, "roster push removing the removed account", subscription="remove")
        items = await b.roster_items()
        check(carol not in items, f"bob's roster must no longer list the removed {carol}: {items}")
        await b.ping()
        step("bob was told, and his roster no longer lists carol")
    finally:
        await close_all([c1, c2, b])


# --------------------------------------------------------------------------
# RFC 6121 ordering and recipient rules (issue 11)
# --------------------------------------------------------------------------


def push_item(iq: Any, jid: str) -> Optional[dict]:
    """The item of a roster push about `jid`, if it is about `jid`."""
    for j, item in iq["roster"]["items"].items():
        if JID(str(j)).bare == JID(jid).bare:
            return dict(item)
    return None


def first_index(received: list[tuple[str, Any]], pred: Callable[[str, Any], bool]) -> Optional[int]:
    for i, (kind, stanza) in enumerate(received):
        try:
            if pred(kind, stanza):
                return i
        except Exception:
            pass
    return None


def delayed(m: Any) -> bool:
    """A message that was stored offline (XEP-0203 delay)."""
    return m.xml.find("{urn:xmpp:delay}delay") is not None


def describe(received: list[tuple[str, Any]], limit: int = 12) -> str:
    """What a client received, in order, one short line each (for failure messages)."""
    lines = []
    for kind, s in received[:limit]:
        if kind == "push":
            lines.append(f"push {[(str(j), i['subscription'], i['ask']) for j, i in s['roster']['items'].items()]}")
        else:
            lines.append(f"{kind} from={s['from']} type={s['type'] or 'available'}"
                         + (f" body={s['body']!r}" if kind == "message" else "")
                         + (" (delayed)" if kind == "message" and delayed(s) else ""))
    return "\n    ".join(lines) or "(nothing)"


@scenario("subscription_order")
async def sc_subscription_order(env: Env) -> None:
    """RFC 6121 3.1.6, 3.2.3 and 3.3.3: when the contact's approval, cancellation or
    unsubscribe reaches the user, the user's server first delivers it to the user's
    resources and only then sends the roster push with the new subscription state."""
    a = Client(env, env.jid("alice") + "/a")
    b = Client(env, env.jid("bob") + "/b")
    try:
        await a.start()
        await b.start()
        a_bare, b_bare = a.boundjid.bare, b.boundjid.bare
        a.sub(b_bare, "subscribe")
        await a.wait_push(b_bare, "RFC 6121 3.1.2: pending-out push", subscription="none", ask="subscribe")
        await b.presences.wait(presence_pred(a_bare, "subscribe"), "RFC 6121 3.1.3: the request")
        mark = len(a.received)
        b.sub(a_bare, "subscribed")
        await a.wait_push(b_bare, "RFC 6121 3.1.6: push subscription=to", subscription="to", ask=None)
        await a.presences.wait(presence_pred(b_bare, "subscribed"), "RFC 6121 3.1.6: 'subscribed' delivered")
        seen = a.received[mark:]
        approval = first_index(seen, lambda k, s: k == "presence" and s["type"] == "subscribed")
        push = first_index(
            seen,
            lambda k, s: k == "push" and (push_item(s, b_bare) or {}).get("subscription") == "to",
        )
        check(
            approval is not None and push is not None and approval < push,
            f"RFC 6121 3.1.6: the inbound 'subscribed' must reach {a.label} before the roster push "
            f"with subscription='to'; it received, in order:\n    {describe(seen)}",
        )
        step("3.1.6: 'subscribed' arrived before the roster push")

        def delivered_before_push(mark: int, ptype: str, subscription: str, rule: str) -> None:
            seen = a.received[mark:]
            delivered = first_index(seen, lambda k, s: k == "presence" and s["type"] == ptype)
            pushed = first_index(
                seen,
                lambda k, s: k == "push" and (push_item(s, b_bare) or {}).get("subscription") == subscription,
            )
            check(
                delivered is not None and pushed is not None and delivered < pushed,
                f"RFC 6121 {rule}: the inbound '{ptype}' must reach {a.label} before the roster push "
                f"with subscription='{subscription}'; it received, in order:\n    {describe(seen)}",
            )
            step(f"{rule}: '{ptype}' arrived before the roster push")

        # 3.2.3: the contact cancels the user's subscription (to -> none).
        mark = len(a.received)
        b.sub(a_bare, "unsubscribed")
        await a.wait_push(b_bare, "RFC 6121 3.2.3: push subscription=none", subscription="none")
        await a.presences.wait(presence_pred(b_bare, "unsubscribed"), "RFC 6121 3.2.3: 'unsubscribed' delivered")
        delivered_before_push(mark, "unsubscribed", "none", "3.2.3")

        # 3.3.3: the contact gives up its subscription to the user (from -> none).
        b.sub(a_bare, "subscribe")
        await a.presences.wait(presence_pred(b_bare, "subscribe"), "RFC 6121 3.1.3: the contact's request")
        a.sub(b_bare, "subscribed")
        await a.wait_push(b_bare, "RFC 6121 3.1.5: push subscription=from", subscription="from")
        mark = len(a.received)
        b.sub(a_bare, "unsubscribe")
        await a.wait_push(b_bare, "RFC 6121 3.3.3: push subscription=none", subscription="none")
        await a.presences.wait(presence_pred(b_bare, "unsubscribe"), "RFC 6121 3.3.3: 'unsubscribe' delivered")
        delivered_before_push(mark, "unsubscribe", "none", "3.3.3")
    finally:
        await close_all([a, b])


@scenario("unavailable_echo")
async def sc_unavailable_echo(env: Env) -> None:
    """RFC 6121 4.5.2: unavailable presence from one resource is delivered to the user's
    other available resources and back to the resource that sent it."""
    bob = env.jid("bob")
    b1 = Client(env, bob + "/u1")
    b2 = Client(env, bob + "/u2")
    try:
        await b1.start()
        await b2.start()
        await b1.presences.wait(presence_pred(b2.boundjid.full), "available presence of the other resource")
        b1.send_presence(ptype="unavailable", pstatus="bye")
        await b2.presences.wait(
            presence_pred(b1.boundjid.full, "unavailable"),
            "RFC 6121 4.5.2: unavailable presence delivered to the user's other available resources",
        )
        p = await b1.presences.wait(
            presence_pred(b1.boundjid.full, "unavailable"),
            "RFC 6121 4.5.2: unavailable presence delivered back to the resource that sent it",
        )
        check(p["status"] == "bye", f"RFC 6121 4.5.2: the echo must be the presence as sent: {p}")
        # Still connected and served.
        await b1.ping()
    finally:
        await close_all([b1, b2])


@scenario("roster_remove")
async def sc_roster_remove(env: Env) -> None:
    """RFC 6121 2.5.2 with 3.2.2: removing a contact that had a 'from' or 'both'
    subscription sends 'unsubscribed' and unavailable presence from each of the user's
    available resources, so the contact's client stops showing the user online. The
    unavailable comes while the contact is still subscribed (3.2.2), i.e. before the
    'unsubscribed'."""
    alice = env.jid("alice")
    a = Client(env, alice + "/a")
    a2 = Client(env, alice + "/a2")
    b = Client(env, env.jid("bob") + "/b")
    try:
        await a.start()
        await b.start()
        await subscribe_handshake(a, b)
        await a2.start(status="second")
        await b.presences.wait(presence_pred(a2.boundjid.full), "the second resource's presence")
        a_bare, b_bare = a.boundjid.bare, b.boundjid.bare
        mark = len(b.received)
        await a.roster_set(b_bare, remove=True)
        await a.wait_push(b_bare, "RFC 6121 2.5.2: push subscription=remove", subscription="remove")
        await b.presences.wait(presence_pred(a_bare, "unsubscribe"), "RFC 6121 2.5.2: 'unsubscribe' to the removed contact")
        await b.presences.wait(presence_pred(a_bare, "unsubscribed"), "RFC 6121 2.5.2: 'unsubscribed' to the removed contact")
        for res in (a, a2):
            await b.presences.wait(
                presence_pred(res.boundjid.full, "unavailable"),
                f"RFC 6121 2.5.2 / 3.2.2: unavailable presence from {res.boundjid.full} to the removed contact",
            )
        await b.wait_push(a_bare, "RFC 6121 3.2.3: the contact's push", subscription="none")
        seen = b.received[mark:]
        unsubscribed = first_index(seen, lambda k, s: k == "presence" and s["type"] == "unsubscribed")
        for res in (a, a2):
            gone = first_index(
                seen,
                lambda k, s, full=res.boundjid.full: k == "presence" and s["type"] == "unavailable" and s["from"].full == full,
            )
            check(
                gone is not None and unsubscribed is not None and gone < unsubscribed,
                f"RFC 6121 3.2.2: unavailable presence from {res.boundjid.full} must come while the contact is "
                f"still subscribed, before 'unsubscribed'; {b.label} received, in order:\n    {describe(seen)}",
            )
        items = await b.roster_items()
        check(items.get(a_bare, {}).get("subscription") == "none", f"contact's item after removal: {items.get(a_bare)}")
    finally:
        await close_all([a, a2, b])


@scenario("initial_presence_order")
async def sc_initial_presence_order(env: Env) -> None:
    """Initial presence vs offline delivery: while alice floods bob's bare JID, bob's
    resource sends initial presence. Whatever bob receives starts with the echo of its
    own presence (RFC 6121 4.2.2), then its contacts' presence (4.2.3), and only then
    stored messages; every message arrives once."""
    alice, bob = env.jid("alice"), env.jid("bob")
    a = Client(env, alice + "/a")
    b0 = Client(env, bob + "/setup")
    clients = [a, b0]
    try:
        await a.start()
        await b0.start()
        await subscribe_handshake(a, b0)
        await b0.stop()
        rounds, burst = 6, 150
        for r in range(rounds):
            b = Client(env, bob + f"/r{r}")
            clients.append(b)
            await b.start(presence=False)
            bodies = [f"round {r} message {i}" for i in range(burst)]
            for body in bodies[: burst // 2]:
                a.msg(bob, body)
            await asyncio.sleep(0.02 * (r % 3))
            b.send_presence()
            for body in bodies[burst // 2 :]:
                a.msg(bob, body)
            for body in bodies:
                await b.messages.wait(lambda m, body=body: m["body"] == body, f"round {r}: {body!r}")
            seen = list(b.received)
            me = b.boundjid.full
            first = first_index(seen, lambda k, s: k in ("message", "presence"))
            check(
                first is not None and seen[first][0] == "presence" and seen[first][1]["from"].full == me
                and seen[first][1]["type"] in ("", "available"),
                f"round {r}: RFC 6121 4.2.2: the first thing {b.label} receives after initial presence must be "
                f"the echo of its own presence; it received, in order:\n    {describe(seen)}",
            )
            contact = first_index(seen, lambda k, s: k == "presence" and s["from"].full == a.boundjid.full)
            stored = first_index(seen, lambda k, s: k == "message" and delayed(s))
            check(
                contact is not None and (stored is None or contact < stored),
                f"round {r}: RFC 6121 4.2.3: contacts' presence must come before stored messages; "
                f"{b.label} received, in order:\n    {describe(seen)}",
            )
            got = [s["body"] for k, s in seen if k == "message"]
            dups = sorted({x for x in got if got.count(x) > 1})
            check(not dups, f"round {r}: messages delivered more than once: {dups[:5]}")
            step(f"round {r}: echo first, {sum(1 for k, s in seen if k == 'message' and delayed(s))} stored messages after the contact's presence")
            await b.stop()
    finally:
        await close_all(clients)


@scenario("simultaneous_subscriptions")
async def sc_simultaneous_subscriptions(env: Env) -> None:
    """Simultaneous subscription handshakes: pairs of users (every --account named
    pair*) send each other 'subscribe' at once and each approves as soon as the request
    arrives. Every roster item must end as 'both' with nothing pending (RFC 6121
    Appendix A): the inbound and outbound halves change the same item concurrently."""
    users = sorted(j for j in env.accounts if j.startswith("pair"))
    check(len(users) >= 2 and len(users) % 2 == 0, f"need an even number of pair* accounts: {users}")
    clients = {j: Client(env, j + "/s") for j in users}
    partner = {}
    for i in range(0, len(users), 2):
        partner[users[i]], partner[users[i + 1]] = users[i + 1], users[i]
    try:
        await asyncio.gather(*(c.start() for c in clients.values()))
        step(f"{len(users)} clients online")

        async def side(me: str) -> None:
            c = clients[me]
            await c.presences.wait(presence_pred(partner[me], "subscribe"), f"RFC 6121 3.1.3: request from {partner[me]}")
            c.sub(partner[me], "subscribed")

        for me in users:
            clients[me].sub(partner[me], "subscribe")
        await asyncio.gather(*(side(me) for me in users))

        async def settled(me: str) -> None:
            try:
                await clients[me].wait_push(partner[me], "settled", subscription="both", ask=None)
            except ScenarioFailure:
                pass

        await asyncio.gather(*(settled(me) for me in users))
        wrong = []
        for me in users:
            item = (await clients[me].roster_items()).get(partner[me])
            if not item or item["subscription"] != "both" or item.get("ask"):
                wrong.append(f"{me}: {partner[me]} -> {item and (item['subscription'], item.get('ask'))}")
        check(
            not wrong,
            f"RFC 6121 Appendix A: {len(wrong)} of {len(users)} roster items did not end as 'both' after "
            f"simultaneous handshakes:\n    " + "\n    ".join(wrong),
        )
        step(f"all {len(users)} roster items are 'both'")
    finally:
        await close_all(list(clients.values()))


@scenario("last_activity_and_time")
async def sc_last_activity_and_time(env: Env) -> None:
    """XEP-0202 and XEP-0012 through slixmpp's plugins, answered by the last-activity and
    entity-time plugins. In a pool (--node) alice, bob and eve are on different nodes:
    bob's logout on his node is answered for on alice's."""
    alice, bob, eve = env.jid("alice"), env.jid("bob"), env.jid("eve")
    a = Client(env, alice + "/la")
    b = Client(env, bob + "/lb")
    e = Client(env, eve + "/le")
    for c in (a, b, e):
        c.register_plugin("xep_0012")
        c.register_plugin("xep_0202")
    try:
        await a.start()
        await b.start()
        await e.start()
        step(f"alice on {a.address}, bob on {b.address}, eve on {e.address}")
        if bob not in (await a.roster_items()):
            await subscribe_handshake(a, b)

        t = await a.iq(_time_iq(a, env.domain), "XEP-0202: entity time of the server")
        utc = t.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}utc")
        check(utc is not None and utc.text and utc.text.endswith("Z"), f"XEP-0202: <utc/> in UTC: {t}")
        skew = abs(time.time() - calendar.timegm(time.strptime(utc.text[:19], "%Y-%m-%dT%H:%M:%S")))
        check(skew < 120, f"XEP-0202: the server's time is {utc.text}, {skew:.0f}s off this machine's")
        step(f"entity time {utc.text}")

        up = await a.iq(_last_iq(a, env.domain), "XEP-0012 6: uptime of the server")
        check(int(up["last_activity"]["seconds"]) >= 0, f"XEP-0012: server uptime: {up}")
        step(f"server uptime {up['last_activity']['seconds']}s")

        online = await a.iq(_last_iq(a, bob), "XEP-0012 4: last activity of an online contact")
        check(online["last_activity"]["seconds"] == 0, f"XEP-0012 4: an online contact is 0 seconds idle: {online}")

        b.send_presence(ptype="unavailable", pstatus="gone fishing")
        await a.presences.wait(presence_pred(b.boundjid.full, "unavailable"), "bob's unavailable presence")
        await b.stop()
        await asyncio.sleep(1.2)
        last = await a.iq(_last_iq(a, bob), "XEP-0012 4: last activity of a contact who logged out")
        secs = last["last_activity"]["seconds"]
        check(1 <= secs < 60, f"XEP-0012 4: seconds since bob logged out: {last}")
        check(last["last_activity"]["status"] == "gone fishing", f"XEP-0012 4: the status of bob's last unavailable presence: {last}")
        step(f"bob logged out {secs}s ago: {last['last_activity']['status']!r}")

        refused = await e.iq_error(_last_iq(e, bob), "XEP-0012 4: a stranger asks for bob's last activity")
        check(refused["error"]["condition"] == "forbidden", f"XEP-0012 4: no subscription, so forbidden: {refused}")
    finally:
        await close_all([a, b, e])


def _get_iq(c: Client, to: str, payload: str) -> Any:
    """An IQ get to `to` carrying the slixmpp stanza plugin `payload`."""
    iq = c.Iq()
    iq["type"] = "get"
    iq["to"] = to
    iq.enable(payload)
    return iq


def _last_iq(c: Client, to: str) -> Any:
    return _get_iq(c, to, "last_activity")


def _time_iq(c: Client, to: str) -> Any:
    return _get_iq(c, to, "entity_time")


@scenario("muc")
async def sc_muc(env: Env) -> None:
    """XEP-0045 through slixmpp's xep_0045 (the muc plugin, first increment): a room is
    created locked and made an instant room by its owner; a second user enters, the two
    chat, a taken nickname is a conflict, a nickname changes (303), a private message goes
    through the room, XEP-0410 self-ping, and leaving is seen by the one who stays."""
    from slixmpp.exceptions import PresenceError
    from slixmpp.plugins.xep_0004 import Form

    service = f"conference.{env.domain}"
    room = JID(f"lounge@{service}")
    a = Client(env, env.jid("alice") + "/muc")
    b = Client(env, env.jid("bob") + "/muc")
    for c in (a, b):
        c.register_plugin("xep_0030")
        c.register_plugin("xep_0045")
        c.register_plugin("xep_0092")
        c.register_plugin("xep_0199")
    try:
        await a.start()
        await b.start()
        info = await a.plugin["xep_0030"].get_info(jid=service, timeout=10)
        check("http://jabber.org/protocol/muc" in info["disco_info"]["features"], f"XEP-0045 6.2: the service announces muc: {info}")

        own, _subject, occupants, _history = await a.plugin["xep_0045"].join_muc_wait(room, "Alice", timeout=10)
        codes = {int(c) for c in own["muc"]["status_codes"]}
        check({110, 201} <= codes, f"XEP-0045 10.1.1: the creator is told 110 and 201: {own}")
        check(own["muc"]["affiliation"] == "owner" and own["muc"]["role"] == "moderator", f"XEP-0045 10.1.1: the creator owns and moderates: {own}")
        step("alice created the room")
        try:
            await b.plugin["xep_0045"].join_muc_wait(room, "Bob", timeout=10)
            check(False, "XEP-0045 10.1.1: a locked room lets nobody else in")
        except PresenceError as e:
            check(e.presence["error"]["condition"] == "item-not-found", f"XEP-0045 10.1.1: item-not-found while locked: {e.presence}")
        except asyncio.TimeoutError:
            raise ScenarioFailure(f"XEP-0045 10.1.1: no answer to entering a locked room; bob got {b.presences.items!r}")
        form = Form()
        await a.plugin["xep_0045"].set_room_config(room, form)
        step("instant room accepted")

        own_b, _s, occ_b, _h = await b.plugin["xep_0045"].join_muc_wait(room, "Bob", timeout=10)
        check(110 in {int(c) for c in own_b["muc"]["status_codes"]}, f"XEP-0045 7.2.3: self-presence has 110: {own_b}")
        check([p["from"].resource for p in occ_b] == ["Alice", "Bob"], f"XEP-0045 7.2.3: bob sees alice, then himself: {occ_b}")
        seen = await a.presences.wait(lambda p: p["from"] == JID(f"{room}/Bob"), "bob's presence in the room")
        check(seen["muc"]["jid"] == b.boundjid, f"XEP-0045 7.2.4: a moderator sees real JIDs: {seen}")

        a.send_message(mto=room, mbody="hello room", mtype="groupchat")
        got = await b.messages.wait(lambda m: m["body"] == "hello room", "alice's groupchat message")
        check(got["from"] == JID(f"{room}/Alice") and got["type"] == "groupchat", f"XEP-0045 7.4: from the sender's nick: {got}")
        await a.messages.wait(lambda m: m["body"] == "hello room", "alice's own message reflected")

        b.make_presence(pto=JID(f"{room}/Alice")).send()
        refused = await b.presences.wait(
            lambda p: p["type"] == "error" and p["from"] == JID(f"{room}/Alice"), "the refusal of a taken nickname"
        )
        check(refused["error"]["condition"] == "conflict", f"XEP-0045 7.2.9: conflict: {refused}")
        # RFC 8266: nicknames are compared case-folded and NFKC-normalised.
        for disguise in ("alice", "\uff21lice"):
            b.make_presence(pto=JID(f"{room}/{disguise}")).send()
            refused = await b.presences.wait(
                lambda p, d=disguise: p["type"] == "error" and p["from"] == JID(f"{room}/{d}"), f"the refusal of {disguise!r}"
            )
            check(refused["error"]["condition"] == "conflict", f"{disguise!r} is Alice's nickname too: {refused}")
        await b.plugin["xep_0045"].set_self_nick(room, "Robert", timeout=10)
        gone = await a.presences.wait(
            lambda p: p["from"] == JID(f"{room}/Bob") and p["type"] == "unavailable", "bob's old nick leaving"
        )
        check(303 in {int(c) for c in gone["muc"]["status_codes"]} and gone["muc"]["item_nick"] == "Robert", f"XEP-0045 7.6: 303 with the new nick: {gone}")
        step("bob is now Robert")

        b.send_message(mto=JID(f"{room}/Alice"), mbody="psst", mtype="chat")
        pm = await a.messages.wait(lambda m: m["body"] == "psst", "bob's private message")
        check(pm["from"] == JID(f"{room}/Robert"), f"XEP-0045 7.5: a private message comes from the nick: {pm}")

        await b.iq(_ping(b, f"{room}/Robert"), "XEP-0410: self-ping of one's own nickname")

        # Queries to a nickname go through the room, both ways, without real JIDs: the
        # vCard (avatars, XEP-0153) from the user's server, the software version from the
        # client of the occupant's first session.
        await b.iq(vcard_iq(b, "set", None, f"<vCard xmlns='{VCARD_NS}'><FN>Robert Example</FN></vCard>"), "bob sets his vCard")
        card = await a.iq(vcard_iq(a, "get", f"{room}/Robert", f"<vCard xmlns='{VCARD_NS}'/>"), "Robert's vCard through the room")
        check(vcard_fn(card) == "Robert Example" and card["from"] == JID(f"{room}/Robert"), f"XEP-0054 through the room: {card}")
        version = await a.plugin["xep_0092"].get_version(JID(f"{room}/Robert"), timeout=10)
        check(version["from"] == JID(f"{room}/Robert") and version["software_version"]["name"], f"XEP-0092 through the room: {version}")
        step("alice asked Robert's vCard and client version through the room")

        # Bob's phone joins under the same nickname: one occupant with two sessions, as in
        # Prosody and ejabberd. The room sees nothing new; both sessions get what is said.
        a.presences.clear()
        b2 = Client(env, env.jid("bob") + "/phone")
        b2.register_plugin("xep_0045")
        await b2.start()
        try:
            own_b2, _s, occ_b2, _h = await b2.plugin["xep_0045"].join_muc_wait(room, "Robert", timeout=10)
            check(110 in _codes(own_b2), f"XEP-0045 7.2.3: the second session is told 110: {own_b2}")
            check(sorted(p["from"].resource for p in occ_b2) == ["Alice", "Robert"], f"one Robert in the room: {occ_b2}")
            a.send_message(mto=room, mbody="to both phones", mtype="groupchat")
            for c in (b, b2):
                await c.messages.wait(lambda m: m["body"] == "to both phones", "a groupchat message at each of bob's sessions")
            a.send_message(mto=JID(f"{room}/Robert"), mbody="private to both", mtype="chat")
            for c in (b, b2):
                await c.messages.wait(lambda m: m["body"] == "private to both", "a private message at each of bob's sessions")
            b2.plugin["xep_0045"].leave_muc(room, "Robert")
            await b2.presences.wait(
                lambda p: p["from"] == JID(f"{room}/Robert") and p["type"] == "unavailable", "the phone's own leaving"
            )
            await a.presences.expect_none(
                lambda p: p["from"].bare == room.bare, "nothing about bob's second session, joining or leaving"
            )
            step("bob's phone shared his nickname and left unnoticed")
        finally:
            await close_all([b2])

        b.plugin["xep_0045"].leave_muc(room, "Robert")
        await a.presences.wait(
            lambda p: p["from"] == JID(f"{room}/Robert") and p["type"] == "unavailable", "bob leaving"
        )
        step("bob left; alice saw it")

        # No ghosts: an occupant whose stream ends without leaving is taken out of the room
        # (the server sends the room its unavailable presence, RFC 6121 4.6.3).
        await b.plugin["xep_0045"].join_muc_wait(room, "Bob", timeout=10)
        await a.presences.wait(lambda p: p["from"] == JID(f"{room}/Bob") and p["type"] != "unavailable", "bob back in the room")
        await b.stop()
        await a.presences.wait(
            lambda p: p["from"] == JID(f"{room}/Bob") and p["type"] == "unavailable", "bob's stream ended: he leaves the room"
        )
        step("bob disconnected; the room told alice")
    finally:
        await close_all([a, b])


MUC_USER = "{http://jabber.org/protocol/muc#user}"


def _codes(stanza: Any) -> set[int]:
    """The muc#user status codes of a presence or message."""
    return {int(e.get("code")) for e in stanza.xml.iter(f"{MUC_USER}status")}


def _find(stanza: Any, tag: str) -> Any:
    """The first descendant element `{ns}name` of a stanza, or None."""
    return stanza.xml.find(f".//{tag}")


def _room_config(values: dict[str, Any]) -> Any:
    """A submitted muc#roomconfig form with these fields."""
    from slixmpp.plugins.xep_0004 import Form

    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/muc#roomconfig")
    for var, value in values.items():
        form.add_field(var=f"muc#roomconfig_{var}", ftype="boolean" if isinstance(value, bool) else "text-single", value=value)
    return form


@scenario("muc_admin")
async def sc_muc_admin(env: Env) -> None:
    """XEP-0045 through slixmpp's xep_0045, xep_0249 and xep_0421 (the muc plugin, third
    increment): a reserved room configured with the muc#roomconfig form (password,
    moderated, persistent), disco#info with muc#roominfo, a wrong password, history by
    maxstanzas, the subject, a visitor without voice and the voice granted, stanza-id and
    occupant-id on messages, mediated invitations and a decline, a direct invitation
    (XEP-0249), membership and a members-only room (322 to outsiders, 104 announced), the
    member list, registration of a nickname nobody else may then use, a kick (307) and a ban (301) with reasons, the outcast list, and the room
    destroyed with a reason and an alternate venue."""
    from slixmpp.exceptions import PresenceError

    service = f"conference.{env.domain}"
    room = JID(f"council@{service}")
    a = Client(env, env.jid("alice") + "/muc")
    b = Client(env, env.jid("bob") + "/muc")
    c = Client(env, env.jid("carol") + "/muc")
    for cl in (a, b, c):
        for plugin in ("xep_0030", "xep_0004", "xep_0045", "xep_0249", "xep_0421"):
            cl.register_plugin(plugin)
    try:
        for cl in (a, b, c):
            await cl.start()
        own, _s, _o, _h = await a.plugin["xep_0045"].join_muc_wait(room, "Alice", timeout=10)
        check(201 in _codes(own), f"XEP-0045 10.1.2: a new room: {own}")
        form = await a.plugin["xep_0045"].get_room_config(room, timeout=10)
        fields = form.get_fields()
        for var in ("roomname", "roomdesc", "persistentroom", "publicroom", "membersonly", "moderatedroom",
                    "passwordprotectedroom", "roomsecret", "maxusers", "whois", "changesubject", "allowinvites",
                    "allowpm", "getmemberlist", "roomowners", "roomadmins"):
            check(f"muc#roomconfig_{var}" in fields, f"XEP-0045 10.2: the form has muc#roomconfig_{var}: {list(fields)}")
        await a.plugin["xep_0045"].set_room_config(room, _room_config({
            "roomname": "Council", "persistentroom": True, "moderatedroom": True,
            "passwordprotectedroom": True, "roomsecret": "s3cret", "allowinvites": True,
        }), timeout=10)
        step("alice configured a reserved room")

        info = await a.plugin["xep_0030"].get_info(jid=room, timeout=10)
        features = info["disco_info"]["features"]
        for var in ("muc_persistent", "muc_passwordprotected", "muc_moderated", "urn:xmpp:occupant-id:0"):
            check(var in features, f"XEP-0045 6.4: the room announces {var}: {features}")
        check(any(name == "Council" for (_c, _t, _l, name) in info["disco_info"]["identities"]), f"XEP-0045 6.4: the room's name: {info}")
        check(info["disco_info"].xml.find("{jabber:x:data}x") is not None, f"XEP-0045 6.4: muc#roominfo: {info}")

        try:
            await b.plugin["xep_0045"].join_muc_wait(room, "Bob", password="guess", timeout=10)
            check(False, "XEP-0045 7.2.5: a wrong password lets nobody in")
        except PresenceError as e:
            check(e.presence["error"]["condition"] == "not-authorized", f"XEP-0045 7.2.5: not-authorized: {e.presence}")
        for n in range(3):
            a.send_message(mto=room, mbody=f"minute {n}", mtype="groupchat")
            await a.messages.wait(lambda m, n=n: m["body"] == f"minute {n}", f"alice's minute {n} reflected")
        a.plugin["xep_0045"].set_subject(room, "Agenda")
        # Set before bob enters: alice's subject and bob's entry travel different streams.
        await a.messages.wait(lambda m: m["subject"] == "Agenda", "the subject reflected to alice")
        own_b, subject, _o, history = await b.plugin["xep_0045"].join_muc_wait(room, "Bob", password="s3cret", maxstanzas=2, timeout=10)
        check([m["body"] for m in history] == ["minute 1", "minute 2"], f"XEP-0045 7.2.15: maxstanzas=2: {[m['body'] for m in history]}")
        check(subject["subject"] == "Agenda", f"XEP-0045 7.2.16: the subject: {subject}")
        check(own_b["muc"]["role"] == "visitor", f"XEP-0045 7.2.5: a newcomer is a visitor in a moderated room: {own_b}")
        b_oid = _find(own_b, "{urn:xmpp:occupant-id:0}occupant-id")
        check(b_oid is not None, f"XEP-0421: occupant-id in presence: {own_b}")
        step("bob entered with the password and two messages of history")

        b.send_message(mto=room, mbody="may I?", mtype="groupchat")
        err = await b.messages.wait(lambda m: m["type"] == "error", "the refusal of a visitor's message")
        check(err["error"]["condition"] == "forbidden", f"XEP-0045 7.4: a visitor may not speak: {err}")
        await a.plugin["xep_0045"].set_role(room, "Bob", "participant", timeout=10)
        voiced = await b.presences.wait(lambda p: p["from"] == JID(f"{room}/Bob") and p["muc"]["role"] == "participant", "bob given voice")
        b.send_message(mto=room, mbody="thank you", mtype="groupchat")
        got = await a.messages.wait(lambda m: m["body"] == "thank you", "bob's message")
        sid = _find(got, "{urn:xmpp:sid:0}stanza-id")
        check(sid is not None and sid.get("by") == str(room), f"XEP-0359: the room's stanza-id: {got}")
        oid = _find(got, "{urn:xmpp:occupant-id:0}occupant-id")
        check(oid is not None and oid.get("id") == b_oid.get("id"), f"XEP-0421: the same occupant-id in message and presence: {got}")
        step("bob was given voice and spoke; stanza-id and occupant-id present")

        a.plugin["xep_0045"].invite(room, c.boundjid.bare, reason="join us")
        inv = await c.messages.wait(lambda m: _find(m, f"{MUC_USER}invite") is not None, "alice's mediated invitation")
        check(JID(_find(inv, f"{MUC_USER}invite").get("from")).bare == a.boundjid.bare, f"XEP-0045 7.8.2: from the inviter: {inv}")
        check(_find(inv, f"{MUC_USER}password") is not None, f"XEP-0045 7.8.2: with the room's password: {inv}")
        c.plugin["xep_0045"].decline(room, a.boundjid.bare, reason="busy")
        dec = await a.messages.wait(lambda m: _find(m, f"{MUC_USER}decline") is not None, "carol's decline")
        check(JID(_find(dec, f"{MUC_USER}decline").get("from")).bare == c.boundjid.bare, f"XEP-0045 7.8.2: the decline names carol: {dec}")
        a.plugin["xep_0249"].send_invitation(c.boundjid.bare, room, password="s3cret", reason="direct")
        direct = await c.messages.wait(lambda m: m["groupchat_invite"]["jid"] == room, "alice's direct invitation")
        check(direct["groupchat_invite"]["password"] == "s3cret", f"XEP-0249: the password: {direct}")
        step("mediated invitation, decline and direct invitation")

        await a.plugin["xep_0045"].set_affiliation(room, "member", jid=b.boundjid.bare, timeout=10)
        await b.presences.wait(lambda p: p["from"] == JID(f"{room}/Bob") and p["muc"]["affiliation"] == "member", "bob made a member")
        await a.plugin["xep_0045"].set_room_config(room, _room_config({"membersonly": True}), timeout=10)
        notice = await b.messages.wait(lambda m: 104 in _codes(m), "the configuration change announced")
        members = await a.plugin["xep_0045"].get_affiliation_list(room, "member", timeout=10)
        check([str(j) for j in members] == [str(b.boundjid.bare)], f"XEP-0045 9.5: the member list: {members}")
        try:
            await c.plugin["xep_0045"].join_muc_wait(room, "Carol", password="s3cret", timeout=10)
            check(False, "XEP-0045 7.2.6: a members-only room keeps non-members out")
        except PresenceError as e:
            check(e.presence["error"]["condition"] == "registration-required", f"XEP-0045 7.2.6: registration-required: {e.presence}")
        step("members-only: bob stays as a member, carol is kept out")

        await a.plugin["xep_0045"].set_affiliation(room, "member", jid=c.boundjid.bare, timeout=10)
        await b.iq(_muc_register(b, str(room), "Bobby"), "XEP-0045 7.10: bob registers the nickname Bobby")
        try:
            await c.plugin["xep_0045"].join_muc_wait(room, "Bobby", password="s3cret", timeout=10)
            check(False, "XEP-0045 7.2.9: a reserved nickname is not for others")
        except PresenceError as e:
            check(e.presence["error"]["condition"] == "conflict", f"XEP-0045 7.2.9: conflict: {e.presence}")
        await c.plugin["xep_0045"].join_muc_wait(room, "Carol", password="s3cret", timeout=10)
        step("bob registered a nickname; carol cannot take it")
        await a.plugin["xep_0045"].set_role(room, "Carol", "none", reason="too loud", timeout=10)
        kicked = await c.presences.wait(lambda p: p["from"] == JID(f"{room}/Carol") and p["type"] == "unavailable", "carol kicked")
        check({307, 110} <= _codes(kicked), f"XEP-0045 8.2: 307 to the kicked: {kicked}")
        check("too loud" in str(kicked), f"XEP-0045 8.2: the reason: {kicked}")
        seen = await b.presences.wait(lambda p: p["from"] == JID(f"{room}/Carol") and p["type"] == "unavailable", "carol's kick seen by bob")
        check(307 in _codes(seen), f"XEP-0045 8.2: 307 to the others: {seen}")
        await a.plugin["xep_0045"].set_affiliation(room, "outcast", jid=c.boundjid.bare, reason="spam", timeout=10)
        outcasts = await a.plugin["xep_0045"].get_affiliation_list(room, "outcast", timeout=10)
        check([str(j) for j in outcasts] == [str(c.boundjid.bare)], f"XEP-0045 9.2: the ban list: {outcasts}")
        try:
            await c.plugin["xep_0045"].join_muc_wait(room, "Carol", password="s3cret", timeout=10)
            check(False, "XEP-0045 7.2.7: a banned user stays out")
        except PresenceError as e:
            check(e.presence["error"]["condition"] == "forbidden", f"XEP-0045 7.2.7: forbidden: {e.presence}")
        step("carol kicked (307), then banned and kept out (forbidden)")

        await a.plugin["xep_0045"].destroy(room, reason="done", altroom=f"annex@{service}", timeout=10)
        end = await b.presences.wait(lambda p: p["from"] == JID(f"{room}/Bob") and p["type"] == "unavailable", "the room destroyed")
        destroy = _find(end, f"{MUC_USER}destroy")
        check(destroy is not None and destroy.get("jid") == f"annex@{service}", f"XEP-0045 10.9: the alternate venue: {end}")
        check("done" in str(end), f"XEP-0045 10.9: the reason: {end}")
        gone = await a.iq_error(_get_iq(a, str(room), "disco_info"), "disco#info of a destroyed room")
        check(gone["error"]["condition"] == "item-not-found", f"XEP-0045: the room is gone: {gone}")
        step("the room was destroyed; bob was told why and where to go")
    finally:
        await close_all([a, b, c])


def _muc_register(c: Client, room: str, nick: str) -> Any:
    """A registration with a room (XEP-0045 7.10) reserving `nick`."""
    from xml.etree import ElementTree as ET

    from slixmpp.plugins.xep_0004 import Form

    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/muc#register")
    form.add_field(var="muc#register_roomnick", value=nick)
    query = ET.Element("{jabber:iq:register}query")
    query.append(form.xml)
    iq = c.Iq()
    iq["type"] = "set"
    iq["to"] = room
    iq.xml.append(query)
    return iq


def _ping(c: Client, to: str) -> Any:
    iq = c.Iq()
    iq["type"] = "get"
    iq["to"] = to
    iq.enable("ping")
    return iq


@scenario("caps_online")
async def sc_caps_online(env: Env) -> None:
    """XEP-0115 through slixmpp's xep_0115: alice and then bob log in with the same
    client capabilities and log out. The harness checks the server's log: the features
    reached the plugins with the user events, and the server asked for them once."""
    clients = []
    try:
        for name in ("alice", "bob"):
            c = Client(env, env.jid(name) + "/caps")
            c.register_plugin("xep_0115")
            clients.append(c)
            # slixmpp computes its caps `ver` on request: the initial presence waits for it,
            # as a real client's carries its caps.
            await c.start(presence=False)
            await c.plugin["xep_0115"].update_caps(broadcast=False)
            c.send_presence()
            await c.ping()
            # Time for the server's disco#info query and our answer.
            await asyncio.sleep(1.0)
            await c.stop()
            step(f"{name} logged in with caps and out again")
    finally:
        await close_all(clients)


BLOCKING_NS = "urn:xmpp:blocking"
BLOCKING_ERRORS_NS = "urn:xmpp:blocking:errors"
PRIVACY_NS = "jabber:iq:privacy"


def _error_condition(stanza: Any) -> str:
    return stanza["error"]["condition"]


def _iq_pushes(c: Client, path: str) -> Inbox:
    """An inbox of the IQ sets matching the slixmpp stanza path `path` (pushes), each
    answered with a result as a client does."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import StanzaPath

    inbox = Inbox(c.label, path)

    def record(iq: Any) -> None:
        inbox.push(iq)
        iq.reply().send()

    c.register_handler(Callback(f"t-{path}", StanzaPath(path), record))
    return inbox


def _list_set(c: Client, name: str, items: str) -> Any:
    """An IQ set storing the privacy list `name` with `items` (raw XML), written by hand:
    slixmpp 1.x's xep_0016 needs a value for fall-through items and its
    Item.set_presence_out writes <presence-in/>."""
    iq = c.Iq()
    iq["type"] = "set"
    iq.append(ET.fromstring(f"<query xmlns='{PRIVACY_NS}'><list name='{name}'>{items}</list></query>"))
    return iq


def _error_pred(frm: str, condition: str) -> Callable[[Any], bool]:
    return lambda m: m["type"] == "error" and is_from(m, frm) and _error_condition(m) == condition


@scenario("blocking")
async def sc_blocking(env: Env) -> None:
    """XEP-0191 through slixmpp's xep_0191, answered and enforced by the privacy plugin:
    the blocklist, pushes to every resource that retrieved it, unavailable presence to a
    newly blocked contact and current presence again when unblocked, messages both ways
    refused with the XEP's errors (not-acceptable with <blocked/> to the blocker, service-
    unavailable to the blocked), presence both ways withheld, a blocked sender's message
    to an offline user not stored, unblock of one and unblock all."""
    alice, bob, carol = env.jid("alice"), env.jid("bob"), env.jid("carol")
    a1 = Client(env, alice + "/one")
    a2 = Client(env, alice + "/two")
    b = Client(env, bob + "/b")
    c = Client(env, carol + "/c")
    clients = [a1, a2, b, c]
    for x in clients:
        x.register_plugin("xep_0191")
    pushes = {x.label: (_iq_pushes(x, "iq@type=set/block"), _iq_pushes(x, "iq@type=set/unblock")) for x in (a1, a2)}
    try:
        for x in (a1, b, c):
            await x.start()
        await subscribe_handshake(a1, b)
        await a2.start()
        await b.presences.wait(presence_pred(a2.boundjid.full), "the second resource's presence")
        for x in (a1, a2):
            got = await x.plugin["xep_0191"].get_blocked_jids(timeout=10)
            check(got == set(), f"XEP-0191 3.2: a new account's blocklist is empty: {got}")
        step("both resources retrieved the (empty) blocklist")

        mark = len(b.received)
        await a1.plugin["xep_0191"].block(JID(bob), timeout=10)
        for x in (a1, a2):
            push = await pushes[x.label][0].wait(
                lambda iq: {str(i["jid"]) for i in iq["block"]} == {bob},
                "XEP-0191 3.3: a block push to every resource that retrieved the blocklist",
            )
            check(not push["from"] or push["from"].full == alice, f"XEP-0191 3.3: the push comes from the user's bare JID: {push}")
        for x in (a1, a2):
            await b.presences.wait(
                presence_pred(x.boundjid.full, "unavailable"),
                f"XEP-0191 3.3: the blocked contact gets unavailable presence from {x.boundjid.full}",
            )
        got = await a2.plugin["xep_0191"].get_blocked_jids(timeout=10)
        check(got == {JID(bob)}, f"XEP-0191 3.2: the blocklist names bob: {got}")
        step("bob is blocked; both resources were told, bob saw alice go")

        b.msg(alice, "bob to blocked alice")
        err = await b.messages.wait(_error_pred(alice, "service-unavailable"), "XEP-0191 3.5: service-unavailable to the blocked sender")
        check(err.xml.find(f".//{{{BLOCKING_ERRORS_NS}}}blocked") is None, f"XEP-0191 3.5: the blocked side is not told it is blocked: {err}")
        a1.msg(bob, "alice to blocked bob")
        err = await a1.messages.wait(_error_pred(bob, "not-acceptable"), "XEP-0191 3.6: not-acceptable to the blocking user")
        check(
            err.xml.find(f".//{{{BLOCKING_ERRORS_NS}}}blocked") is not None,
            f"XEP-0191 3.6: the error carries <blocked xmlns='{BLOCKING_ERRORS_NS}'/>: {err}",
        )
        b.send_presence(pstatus="bob is here")
        a1.send_presence(pstatus="alice is here")
        await a1.messages.expect_none(lambda m: m["body"] == "bob to blocked alice", "a message from a blocked contact")
        await b.messages.expect_none(lambda m: m["body"] == "alice to blocked bob", "a message to a blocked contact")
        await a1.presences.expect_none(lambda p: is_from(p, bob) and p["status"] == "bob is here", "presence from a blocked contact")
        await b.presences.expect_none(lambda p: is_from(p, alice) and p["status"] == "alice is here", "presence to a blocked contact")
        seen = b.received[mark:]
        check(
            not any(k == "presence" and is_from(s, alice) and s["type"] in ("", "available") for k, s in seen),
            f"XEP-0191: bob saw alice available while blocked: {describe(seen)}",
        )
        # Carol is not blocked.
        c.msg(alice + "/one", "carol to alice")
        await a1.messages.wait(message_pred(carol, "carol to alice"), "a contact who is not blocked still gets through")
        step("messages and presence are withheld both ways; carol still gets through")

        # Offline: a blocked sender's message is refused, not stored.
        await a1.stop()
        await a2.stop()
        b.msg(alice, "bob to offline alice")
        await b.messages.wait(_error_pred(alice, "service-unavailable"), "a blocked sender's message to an offline user is refused")
        a1 = Client(env, alice + "/one")
        a1.register_plugin("xep_0191")
        pushes[a1.label] = (_iq_pushes(a1, "iq@type=set/block"), _iq_pushes(a1, "iq@type=set/unblock"))
        clients.append(a1)
        await a1.start()
        await a1.messages.expect_none(lambda m: m["body"] == "bob to offline alice", "a blocked sender's message stored offline")
        step("nothing from bob was stored while alice was offline")

        # Unblock bob: he sees alice again and messages flow.
        await a1.plugin["xep_0191"].get_blocked_jids(timeout=10)
        await a1.plugin["xep_0191"].unblock(JID(bob), timeout=10)
        await pushes[a1.label][1].wait(
            lambda iq: {str(i["jid"]) for i in iq["unblock"]} == {bob},
            "XEP-0191 3.4: an unblock push",
        )
        await b.presences.wait(presence_pred(a1.boundjid.full), "XEP-0191 3.4: the unblocked contact gets the user's current presence")
        b.msg(alice + "/one", "bob to alice again")
        await a1.messages.wait(message_pred(bob, "bob to alice again"), "after unblocking, messages flow")
        step("bob unblocked")

        # Unblock all.
        await a1.plugin["xep_0191"].block([JID(bob), JID(carol)], timeout=10)
        got = await a1.plugin["xep_0191"].get_blocked_jids(timeout=10)
        check(got == {JID(bob), JID(carol)}, f"XEP-0191 3.3: two blocked: {got}")
        iq = a1.make_iq_set()
        iq.enable("unblock")
        await a1.iq(iq, "XEP-0191 3.4: unblock all")
        await pushes[a1.label][1].wait(lambda iq: len(list(iq["unblock"])) == 0, "XEP-0191 3.4: an unblock-all push (no items)")
        got = await a1.plugin["xep_0191"].get_blocked_jids(timeout=10)
        check(got == set(), f"XEP-0191 3.4: unblock all empties the blocklist: {got}")
        c.msg(alice + "/one", "carol after unblock all")
        await a1.messages.wait(message_pred(carol, "carol after unblock all"), "after unblock all, messages flow")
        # Bad input: a block without items.
        iq = a1.make_iq_set()
        iq.enable("block")
        err = await a1.iq_error(iq, "XEP-0191 3.3: a block without items")
        check(_error_condition(err) == "bad-request", f"XEP-0191 3.3: bad-request for an empty block: {err}")
        step("unblock all and an empty block")
    finally:
        await close_all(clients)


@scenario("privacy_lists")
async def sc_privacy_lists(env: Env) -> None:
    """XEP-0016 through slixmpp's xep_0016, answered and enforced by the privacy plugin:
    lists are stored, listed, pushed to every resource; an active list applies to its
    session only and a default list to every session without one; jid, subscription and
    fall-through items with message and presence-out kinds; conflicts; item-not-found;
    bad-request for a malformed list."""
    carol, eve, bob = env.jid("carol"), env.jid("eve"), env.jid("bob")
    c1 = Client(env, carol + "/one")
    c2 = Client(env, carol + "/two")
    e = Client(env, eve + "/e")
    b = Client(env, bob + "/p")
    clients = [c1, c2, e, b]
    for x in clients:
        x.register_plugin("xep_0016")
    pushes = {x.label: _iq_pushes(x, "iq@type=set/privacy") for x in (c1, c2)}
    priv = c1.plugin["xep_0016"]
    try:
        for x in (c1, e, b):
            await x.start()
        await subscribe_handshake(c1, e)
        await c2.start()
        await e.presences.wait(presence_pred(c2.boundjid.full), "the second resource's presence")

        # A list that blocks messages from bob (jid item) and lets the rest through.
        rules = [{"type": "jid", "value": bob, "action": "deny", "order": "1", "message": True}]
        await priv.edit_list("no-bob", rules, timeout=10)
        for x in (c1, c2):
            await pushes[x.label].wait(
                lambda iq: iq["privacy"]["list"]["name"] == "no-bob", "XEP-0016 2.5: a list push to every resource"
            )
        got = await priv.get_privacy_lists(timeout=10)
        names = {e.get("name") for e in got.xml.iter(f"{{{PRIVACY_NS}}}list")}
        check(names == {"no-bob"}, f"XEP-0016 2.3: the list names: {got}")
        got = await priv.get_list("no-bob", timeout=10)
        items = list(got.xml.iter(f"{{{PRIVACY_NS}}}item"))
        check(
            len(items) == 1 and items[0].get("value") == bob and items[0].get("action") == "deny"
            and items[0].find(f"{{{PRIVACY_NS}}}message") is not None,
            f"XEP-0016 2.4: the list as stored: {got}",
        )
        iq = c1.Iq()
        iq["type"] = "get"
        iq["privacy"]["list"]["name"] = "nonesuch"
        err = await c1.iq_error(iq, "XEP-0016 2.4: an unknown list")
        check(_error_condition(err) == "item-not-found", f"XEP-0016 2.4: item-not-found for an unknown list: {err}")
        step("list stored, pushed, listed and read back")

        # Active on c1 only: bob's message to c1 is refused, to c2 delivered.
        await priv.activate("no-bob", timeout=10)
        b.msg(carol + "/one", "bob to carol one")
        await b.messages.wait(_error_pred(carol + "/one", "service-unavailable"), "XEP-0016 2.13: a denied inbound message is refused")
        b.msg(carol + "/two", "bob to carol two")
        await c2.messages.wait(message_pred(bob, "bob to carol two"), "XEP-0016 2.6: an active list applies to its own session only")
        await c1.messages.expect_none(lambda m: m["body"] == "bob to carol one", "a message the active list denies")
        # Removing a list another session has active: conflict.
        iq = c2.Iq()
        iq["type"] = "set"
        iq["privacy"]["list"]["name"] = "no-bob"
        err = await c2.iq_error(iq, "XEP-0016 2.8: removing a list active for another resource")
        check(_error_condition(err) == "conflict", f"XEP-0016 2.8: conflict: {err}")
        iq = c1.Iq()
        iq["type"] = "set"
        iq["privacy"]["active"]["name"] = "nonesuch"
        err = await c1.iq_error(iq, "XEP-0016 2.6: activating an unknown list")
        check(_error_condition(err) == "item-not-found", f"XEP-0016 2.6: item-not-found: {err}")
        await priv.deactivate(timeout=10)
        b.msg(carol + "/one", "bob to carol after decline")
        await c1.messages.wait(message_pred(bob, "bob to carol after decline"), "XEP-0016 2.7: declining the active list")
        step("active list per session, conflict on removal, decline")

        # Default list: only contacts with a subscription may send messages (subscription item,
        # then a fall-through deny for messages).
        items = "<item type='subscription' value='both' action='allow' order='10'/><item action='deny' order='20'><message/></item>"
        await c1.iq(_list_set(c1, "contacts-only", items), "XEP-0016 2.5: a list with a subscription item and a fall-through")
        await priv.make_default("contacts-only", timeout=10)
        b.msg(carol + "/two", "stranger to carol")
        await b.messages.wait(_error_pred(carol + "/two", "service-unavailable"), "XEP-0016 2.9: the default list denies a stranger")
        e.msg(carol + "/two", "contact to carol")
        await c2.messages.wait(message_pred(eve, "contact to carol"), "XEP-0016: a subscription=both item allows the contact")
        # Offline: the default list applies and nothing is stored.
        await c1.stop()
        await c2.stop()
        b.msg(carol, "stranger to offline carol")
        await b.messages.wait(_error_pred(carol, "service-unavailable"), "the default list applies to an offline user")
        c1 = Client(env, carol + "/one")
        c1.register_plugin("xep_0016")
        pushes[c1.label] = _iq_pushes(c1, "iq@type=set/privacy")
        clients.append(c1)
        await c1.start()
        await c1.messages.expect_none(lambda m: m["body"] == "stranger to offline carol", "a denied message stored offline")
        priv = c1.plugin["xep_0016"]
        step("default list for every session and for offline storage")

        # presence-out: eve stops seeing carol's presence once the list is active.
        items = f"<item type='jid' value='{eve}' action='deny' order='1'><presence-out/></item>"
        await c1.iq(_list_set(c1, "hide-from-eve", items), "XEP-0016 2.5: a list denying presence-out")
        await priv.activate("hide-from-eve", timeout=10)
        c1.send_presence(pstatus="hidden from eve")
        await e.presences.expect_none(
            lambda p: is_from(p, carol + "/one") and p["status"] == "hidden from eve", "XEP-0016 2.13: presence-out denied"
        )
        await priv.deactivate(timeout=10)
        c1.send_presence(pstatus="visible to eve")
        await e.presences.wait(
            lambda p: is_from(p, carol + "/one") and p["status"] == "visible to eve", "presence-out allowed again"
        )
        step("presence-out")

        # Bad input: duplicate order, missing action.
        for bad, what in (
            ("<item type='jid' value='x@y' action='deny' order='1'/><item action='allow' order='1'/>", "duplicate order"),
            ("<item type='jid' value='x@y' order='1'/>", "an item without action"),
            ("<item type='nonsense' value='x' action='deny' order='1'/>", "an unknown type"),
        ):
            err = await c1.iq_error(_list_set(c1, "bad", bad), f"XEP-0016: a list with {what}")
            check(_error_condition(err) == "bad-request", f"XEP-0016: bad-request for {what}: {err}")
        got = await priv.get_privacy_lists(timeout=10)
        names = {e.get("name") for e in got.xml.iter(f"{{{PRIVACY_NS}}}list")}
        check("bad" not in names, f"a malformed list is not stored: {names}")
        step("malformed lists refused, nothing stored")
    finally:
        await close_all(clients)


PUBSUB_NS = "http://jabber.org/protocol/pubsub"
PUBSUB_OWNER_NS = "http://jabber.org/protocol/pubsub#owner"
PUBSUB_EVENT_NS = "http://jabber.org/protocol/pubsub#event"
PUBSUB_ERRORS_NS = "http://jabber.org/protocol/pubsub#errors"
MOOD_NS = "http://jabber.org/protocol/mood"


def _pubsub_iq(c: Client, itype: str, inner: str, to: Optional[str] = None, owner: bool = False) -> Any:
    """A pubsub IQ written by hand (`inner` is the XML inside <pubsub/>), so the test
    says exactly what goes on the wire."""
    iq = c.Iq()
    iq["type"] = itype
    if to:
        iq["to"] = to
    ns = PUBSUB_OWNER_NS if owner else PUBSUB_NS
    iq.append(ET.fromstring(f"<pubsub xmlns='{ns}'>{inner}</pubsub>"))
    return iq


def _publish_options(**fields: str) -> str:
    x = (
        "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{PUBSUB_NS}#publish-options</value></field>"
    )
    for var, value in fields.items():
        x += f"<field var='pubsub#{var}'><value>{value}</value></field>"
    return x + "</x></publish-options>"


def _mood(node_item: str, what: str) -> str:
    return f"<publish node='{MOOD_NS}'><item id='{node_item}'><mood xmlns='{MOOD_NS}'><{what}/></mood></item></publish>"


def _event_items(m: Any, node: str) -> Optional[Any]:
    """The <items/> of a pubsub event notification for `node`, if `m` is one."""
    items = m.xml.find(f"{{{PUBSUB_EVENT_NS}}}event/{{{PUBSUB_EVENT_NS}}}items")
    if items is None or items.get("node") != node:
        return None
    return items


def _event_item_ids(m: Any, node: str) -> list[str]:
    items = _event_items(m, node)
    if items is None:
        return []
    return [i.get("id") for i in items.findall(f"{{{PUBSUB_EVENT_NS}}}item")]


def _retrieved_ids(result: Any) -> list[str]:
    return [i.get("id") for i in result.xml.iter(f"{{{PUBSUB_NS}}}item")]


def _pubsub_app_error(err: Any) -> Optional[str]:
    e = err.xml.find(f"{{jabber:client}}error")
    if e is None:
        return None
    for child in e:
        if child.tag.startswith(f"{{{PUBSUB_ERRORS_NS}}}"):
            return child.tag.split("}", 1)[1]
    return None


async def _with_interest(c: Client, nodes: list[str]) -> None:
    """Log in with entity capabilities (XEP-0115) that ask for notifications of `nodes`
    (XEP-0163 4.2: NODE+notify), then send initial presence carrying them."""
    await c.start(presence=False)
    for n in nodes:
        c.plugin["xep_0030"].add_feature(f"{n}+notify")
    await c.plugin["xep_0115"].update_caps(broadcast=False)
    c.send_presence()


@scenario("pep")
async def sc_pep(env: Env) -> None:
    """XEP-0163 through slixmpp, served by the pubsub plugin: the account is a PEP
    service (disco); a publish is acknowledged and notified to the owner's and contacts'
    resources whose entity caps ask for the node (+notify) and to no one else; contacts
    retrieve items, strangers get presence-subscription-required; publish-options make a
    private (whitelist) node and guard it afterwards (precondition-not-met), and disco#items
    of the account shows it to the owner only; max_items
    trims; retract and purge are notified; a contact coming online gets the last item;
    only the owner publishes."""
    alice, bob, carol, eve = env.jid("alice"), env.jid("bob"), env.jid("carol"), env.jid("eve")
    tmp = "urn:xmpp:tmp:pep-list"
    a = Client(env, alice + "/a")
    b = Client(env, bob + "/b")
    c = Client(env, carol + "/c")
    e = Client(env, eve + "/e")
    clients = [a, b, c, e]
    for x in clients:
        x.register_plugin("xep_0115")
    try:
        await _with_interest(a, [MOOD_NS])
        await _with_interest(b, [MOOD_NS, tmp])
        await _with_interest(c, ["urn:xmpp:tmp:something-else"])
        await e.start()
        await subscribe_handshake(a, b)
        await subscribe_handshake(a, c)
        # Time for the server to learn the caps (it asks each resource once).
        await asyncio.sleep(1.5)

        info = await a.plugin["xep_0030"].get_info(jid=alice, timeout=10)
        identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
        features = set(info["disco_info"]["features"])
        check(("pubsub", "pep") in identities, f"XEP-0163 6.1: the account is a PEP service: {identities}")
        check(f"{PUBSUB_NS}#publish-options" in features, f"XEP-0163 6.1: publish-options advertised: {features}")
        step("the account's disco#info shows pubsub/pep")

        res = await a.iq(_pubsub_iq(a, "set", _mood("m1", "happy")), "XEP-0163 3: publish (auto-create)")
        published = res.xml.find(f".//{{{PUBSUB_NS}}}publish/{{{PUBSUB_NS}}}item")
        check(published is not None and published.get("id") == "m1", f"XEP-0060 7.1.2: the result names the item: {res}")
        for x in (a, b):
            m = await x.messages.wait(lambda m: _event_item_ids(m, MOOD_NS) == ["m1"], "XEP-0163 4: a notification to a resource with +notify")
            check(is_from(m, alice), f"XEP-0163 4.3.1: notifications come from the account's bare JID: {m}")
            check(m["type"] == "headline", f"XEP-0163 5: notifications are headlines: {m}")
            check(m.xml.find(f".//{{{MOOD_NS}}}happy") is not None, f"XEP-0163 4: the payload is delivered: {m}")
        await c.messages.expect_none(lambda m: _event_items(m, MOOD_NS) is not None, "a notification to a contact without +notify")
        await e.messages.expect_none(lambda m: _event_items(m, MOOD_NS) is not None, "a notification to a stranger")
        step("a publish reached alice and bob (+notify), not carol (no +notify) nor eve")

        got = await b.iq(_pubsub_iq(b, "get", f"<items node='{MOOD_NS}'/>", to=alice), "XEP-0060 6.5: a contact retrieves items")
        check(_retrieved_ids(got) == ["m1"], f"XEP-0060 6.5: the item: {got}")
        err = await e.iq_error(_pubsub_iq(e, "get", f"<items node='{MOOD_NS}'/>", to=alice), "a stranger retrieves a presence-access node")
        check(
            _error_condition(err) == "not-authorized" and _pubsub_app_error(err) == "presence-subscription-required",
            f"XEP-0060 6.5.7: not-authorized with presence-subscription-required: {err}",
        )
        err = await b.iq_error(_pubsub_iq(b, "set", _mood("x", "sad"), to=alice), "a contact publishes to alice's node")
        check(_error_condition(err) == "forbidden", f"XEP-0163 2.2: only the owner publishes: {err}")
        step("bob retrieves, eve is refused, bob cannot publish to alice")

        # XEP-0223: private storage as a whitelist node, then guarded by its options.
        private = _publish_options(persist_items="true", access_model="whitelist", max_items="max")
        bookmark = "<publish node='urn:xmpp:bookmarks:1'><item id='room@conference.example'><conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/></item></publish>"
        await a.iq(_pubsub_iq(a, "set", bookmark + private), "XEP-0223: a private publish with publish-options")
        err = await b.iq_error(_pubsub_iq(b, "get", "<items node='urn:xmpp:bookmarks:1'/>", to=alice), "a contact reads a whitelist node")
        check(
            _error_condition(err) == "not-allowed" and _pubsub_app_error(err) == "closed-node",
            f"XEP-0060 6.5.7: not-allowed with closed-node: {err}",
        )
        await a.iq(_pubsub_iq(a, "set", bookmark + private), "XEP-0060 7.1.5: the same options again")
        err = await a.iq_error(
            _pubsub_iq(a, "set", bookmark + _publish_options(access_model="open")), "publish-options that do not match the node"
        )
        check(
            _error_condition(err) == "conflict" and _pubsub_app_error(err) == "precondition-not-met",
            f"XEP-0060 7.1.5: conflict with precondition-not-met: {err}",
        )
        got = await a.iq(_pubsub_iq(a, "get", "<items node='urn:xmpp:bookmarks:1'/>"), "the owner reads the private node")
        check(_retrieved_ids(got) == ["room@conference.example"], f"the private item: {got}")
        for who, expect in ((a, {MOOD_NS, "urn:xmpp:bookmarks:1"}), (b, {MOOD_NS})):
            got = await who.plugin["xep_0030"].get_items(jid=alice, timeout=10)
            nodes = {i[1] for i in got["disco_items"]["items"]}
            check(nodes == expect, f"XEP-0163 6.2: {who.label} discovers the nodes it may see: {nodes}")
        step("a private node: whitelist for others, the owner reads it, options are preconditions")

        # max_items trims the oldest; retract and purge are notified.
        two = _publish_options(max_items="2")
        for n in ("i1", "i2", "i3"):
            await a.iq(
                _pubsub_iq(a, "set", f"<publish node='{tmp}'><item id='{n}'><x xmlns='{tmp}'>{n}</x></item></publish>{two}"),
                f"publish {n}",
            )
            await b.messages.wait(lambda m, n=n: _event_item_ids(m, tmp) == [n], f"the notification of {n}")
        got = await b.iq(_pubsub_iq(b, "get", f"<items node='{tmp}'/>", to=alice), "items after three publishes")
        check(_retrieved_ids(got) == ["i2", "i3"], f"XEP-0060 max_items=2 keeps the two newest: {got}")
        await a.iq(_pubsub_iq(a, "set", f"<retract node='{tmp}' notify='true'><item id='i2'/></retract>"), "XEP-0060 7.2: retract")
        await b.messages.wait(
            lambda m: (i := _event_items(m, tmp)) is not None and [r.get("id") for r in i.findall(f"{{{PUBSUB_EVENT_NS}}}retract")] == ["i2"],
            "XEP-0060 7.2.2: a retract notification",
        )
        await a.iq(_pubsub_iq(a, "set", f"<purge node='{tmp}'/>", owner=True), "XEP-0060 8.5: purge")
        await b.messages.wait(
            lambda m: (p := m.xml.find(f"{{{PUBSUB_EVENT_NS}}}event/{{{PUBSUB_EVENT_NS}}}purge")) is not None and p.get("node") == tmp,
            "XEP-0060 8.5.2: a purge notification",
        )
        got = await a.iq(_pubsub_iq(a, "get", f"<items node='{tmp}'/>"), "items after the purge")
        check(_retrieved_ids(got) == [], f"XEP-0060 8.5: a purged node is empty: {got}")
        step("max_items trimming, retract and purge notifications")

        # The last item when a contact comes online (send_last_published_item).
        await a.iq(_pubsub_iq(a, "set", _mood("m2", "sad")), "publish m2")
        await b.messages.wait(lambda m: _event_item_ids(m, MOOD_NS) == ["m2"], "the notification of m2")
        await b.stop()
        b2 = Client(env, bob + "/again")
        b2.register_plugin("xep_0115")
        clients.append(b2)
        await _with_interest(b2, [MOOD_NS])
        m = await b2.messages.wait(
            lambda m: _event_item_ids(m, MOOD_NS) == ["m2"], "XEP-0163 4.3.4: the last item on coming online"
        )
        check(m.xml.find("{urn:xmpp:delay}delay") is not None, f"XEP-0060: the last item carries a delay stamp: {m}")
        step("bob's new resource got alice's last mood when it came online")

        # Delete: notified, and the node is gone.
        await a.iq(_pubsub_iq(a, "set", f"<delete node='{MOOD_NS}'/>", owner=True), "XEP-0060 8.4: delete")
        await b2.messages.wait(
            lambda m: (d := m.xml.find(f"{{{PUBSUB_EVENT_NS}}}event/{{{PUBSUB_EVENT_NS}}}delete")) is not None and d.get("node") == MOOD_NS,
            "XEP-0060 8.4.2: a delete notification",
        )
        err = await b2.iq_error(_pubsub_iq(b2, "get", f"<items node='{MOOD_NS}'/>", to=alice), "items of a deleted node")
        check(_error_condition(err) == "item-not-found", f"XEP-0060 6.5.9: item-not-found: {err}")
        step("a deleted node is notified and gone")
    finally:
        await close_all(clients)


@scenario("pep_blocking")
async def sc_pep_blocking(env: Env) -> None:
    """XEP-0191 on the PEP path (the pubsub and privacy plugins together): once alice
    blocks bob, alice's notifications no longer reach him and he cannot retrieve her
    items (the ejabberd#1573 hole), and alice is not sent errors for the notifications
    withheld; unblocked, he is notified again."""
    alice, bob = env.jid("alice"), env.jid("bob")
    a = Client(env, alice + "/a")
    b = Client(env, bob + "/b")
    clients = [a, b]
    for x in clients:
        x.register_plugin("xep_0115")
        x.register_plugin("xep_0191")
    try:
        await _with_interest(a, [])
        await _with_interest(b, [MOOD_NS])
        await subscribe_handshake(a, b)
        await asyncio.sleep(1.5)
        await a.iq(_pubsub_iq(a, "set", _mood("before", "happy")), "publish before the block")
        await b.messages.wait(lambda m: _event_item_ids(m, MOOD_NS) == ["before"], "a notification before the block")
        await a.plugin["xep_0191"].block(JID(bob), timeout=10)
        await a.iq(_pubsub_iq(a, "set", _mood("during", "sad")), "publish while bob is blocked")
        await b.messages.expect_none(lambda m: _event_items(m, MOOD_NS) is not None, "a notification to a blocked contact")
        await a.messages.expect_none(lambda m: m["type"] == "error", "errors to alice for withheld notifications", duration=1.0)
        err = await b.iq_error(_pubsub_iq(b, "get", f"<items node='{MOOD_NS}'/>", to=alice), "a blocked contact retrieves items")
        check(_error_condition(err) == "service-unavailable", f"XEP-0191 3.5: service-unavailable to the blocked: {err}")
        step("blocked: no notifications, no retrieval, no errors to alice")
        await a.plugin["xep_0191"].unblock(JID(bob), timeout=10)
        await a.iq(_pubsub_iq(a, "set", _mood("after", "happy")), "publish after the unblock")
        await b.messages.wait(lambda m: _event_item_ids(m, MOOD_NS) == ["after"], "a notification after the unblock")
        step("unblocked: notified again")
    finally:
        await close_all(clients)


PRIVATE_NS = "jabber:iq:private"


def _private_iq(c: Client, itype: str, inner: str, to: Optional[str] = None) -> Any:
    iq = c.Iq()
    iq["type"] = itype
    if to:
        iq["to"] = to
    iq.append(ET.fromstring(f"<query xmlns='{PRIVATE_NS}'>{inner}</query>"))
    return iq


@scenario("private_storage")
async def sc_private_storage(env: Env) -> None:
    """XEP-0049 through slixmpp, served by the private plugin: legacy bookmarks
    (XEP-0048) stored by one resource are read by another; nothing stored reads back as
    the empty element; another user is refused; a fragment without a namespace of its own
    is not-acceptable."""
    alice, bob = env.jid("alice"), env.jid("bob")
    a1 = Client(env, alice + "/one")
    a2 = Client(env, alice + "/two")
    b = Client(env, bob + "/b")
    clients = [a1, a2, b]
    try:
        for x in clients:
            await x.start()
        bookmarks = "<storage xmlns='storage:bookmarks'><conference jid='lounge@conference.example' autojoin='true' name='Lounge'><nick>Al</nick></conference></storage>"
        await a1.iq(_private_iq(a1, "set", bookmarks), "XEP-0049 3.2: store legacy bookmarks")
        got = await a2.iq(_private_iq(a2, "get", "<storage xmlns='storage:bookmarks'/>"), "XEP-0049 3.3: read them from another resource")
        conf = got.xml.find(f".//{{storage:bookmarks}}conference")
        check(conf is not None and conf.get("jid") == "lounge@conference.example", f"XEP-0049: the stored fragment: {got}")
        got = await a2.iq(_private_iq(a2, "get", "<prefs xmlns='urn:example:prefs'/>"), "a fragment never stored")
        prefs = got.xml.find(f".//{{urn:example:prefs}}prefs")
        check(prefs is not None and len(list(prefs)) == 0, f"XEP-0049 3.3: nothing stored reads back empty: {got}")
        err = await b.iq_error(_private_iq(b, "get", "<storage xmlns='storage:bookmarks'/>", to=alice), "another user's private storage")
        check(_error_condition(err) == "forbidden", f"XEP-0049 3: forbidden: {err}")
        err = await a1.iq_error(_private_iq(a1, "set", f"<x xmlns='{PRIVATE_NS}'/>"), "a fragment in jabber:iq:private")
        check(_error_condition(err) == "not-acceptable", f"XEP-0049 3.2: not-acceptable: {err}")
        step("private storage: stored, read back, refused to others")
    finally:
        await close_all(clients)


# --------------------------------------------------------------------------
# XEP-0198 stream management (the server is started with resume_timeout_secs = 3)
# --------------------------------------------------------------------------

NS_SM = "urn:xmpp:sm:3"


def _sm_client(env: Env, jid: str, label: str) -> Client:
    c = Client(env, jid, label=label)
    c.register_plugin("xep_0198")
    # Ask for an acknowledgement after every stanza, so what the server handled is known
    # at each step of the scenario.
    c.plugin["xep_0198"].window = 1
    c.sm_events: dict[str, list[Any]] = {}
    for event in ("sm_enabled", "sm_failed", "session_resumed", "stanza_acked"):
        c.add_event_handler(event, lambda s, event=event, c=c: c.sm_events.setdefault(event, []).append(s))
    # The server's own ack requests (<r/>), beside slixmpp's handler that answers them.
    c.register_handler(
        Callback("t-sm-r", MatchXPath(f"{{{NS_SM}}}r"), lambda s, c=c: c.sm_events.setdefault("r", []).append(s))
    )
    return c


async def _sm_event(c: Client, event: str, what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not c.sm_events.get(event):
        if time.monotonic() > deadline:
            raise ScenarioFailure(f"{c.label}: timed out waiting for {event}: {what}; seen {sorted(c.sm_events)}")
        await asyncio.sleep(0.05)
    return c.sm_events[event].pop(0)


async def _reconnect(c: Client) -> None:
    """Open a new connection for a client whose TCP connection was dropped: slixmpp
    resumes its session when it knows an SM id, or starts a new one after <failed/>."""
    host, port, _ = c.address
    c._disconnected_ev = asyncio.Event()
    c.connect(host, port)


@scenario("stream_management")
async def sc_stream_management(env: Env) -> None:
    alice_jid, bob_jid = env.jid("alice"), env.jid("bob")
    alice = _sm_client(env, alice_jid + "/phone", "alice")
    bob = Client(env, bob_jid + "/desk", label="bob")
    carol: Optional[Client] = None
    try:
        await alice.start()
        await bob.start()
        enabled = await _sm_event(alice, "sm_enabled", "XEP-0198 3: <enabled/> after <enable resume='true'/>")
        check(enabled["resume"] and enabled["id"], f"XEP-0198 5: a resumable session has an id: {enabled}")
        await subscribe_handshake(alice, bob)

        step("acknowledgements both ways")
        before = len(alice.sm_events.get("stanza_acked", []))
        for i in range(5):
            alice.msg(bob_jid, f"acked {i}")
        for i in range(5):
            await bob.messages.wait(message_pred(alice_jid, f"acked {i}"), f"message {i} from alice")
        deadline = time.monotonic() + TIMEOUT
        while len(alice.sm_events.get("stanza_acked", [])) - before < 5:
            check(time.monotonic() < deadline, "XEP-0198 4: the server answers <r/> with <a h/> covering alice's stanzas")
            await asyncio.sleep(0.05)
        for i in range(3):
            bob.msg(alice_jid + "/phone", f"to alice {i}")
        for i in range(3):
            await alice.messages.wait(message_pred(bob_jid, f"to alice {i}"), f"message {i} from bob")
        await _sm_event(alice, "r", "XEP-0198 4: the server asks for an acknowledgement after sending stanzas")

        step("resumption after a dropped TCP connection")
        bob.presences.clear()
        alice.kill_tcp()
        await alice.wait_disconnected("TCP connection killed")
        # One message while the server may still believe the old connection alive, one
        # surely after; and one alice sent just before her connection died.
        bob.msg(alice_jid + "/phone", "while away 1")
        await asyncio.sleep(0.5)
        bob.msg(alice_jid, "while away 2")
        await bob.ping()
        await _reconnect(alice)
        resumed = await _sm_event(alice, "session_resumed", "XEP-0198 5: <resumed/> for the previous session's id")
        check(resumed["previd"] == enabled["id"], f"<resumed previd/> names the session: {resumed}")
        for body in ("while away 1", "while away 2"):
            await alice.messages.wait(message_pred(bob_jid, body), f"XEP-0198 5: {body!r} delivered after resumption")
        check(alice.sessions_started == 1, "a resumed session is not a new one (no second session_start)")
        await bob.presences.expect_none(
            presence_pred(alice_jid, "unavailable"), "contacts see no unavailable presence for a resumed session"
        )

        step("a stanza in flight when the connection died is handled exactly once")
        # No ack request from alice this time: the server handles the message, alice
        # does not learn it before her connection dies, and learns it from <resumed h/>.
        alice.plugin["xep_0198"].window = alice.plugin["xep_0198"].window_counter = 1000
        alice.msg(bob_jid, "in flight")
        await asyncio.sleep(0.3)
        alice.kill_tcp()
        await alice.wait_disconnected("TCP connection killed again")
        await _reconnect(alice)
        await _sm_event(alice, "session_resumed", "second resumption")
        await bob.messages.wait(message_pred(alice_jid, "in flight"), "the in-flight message reaches bob")
        await bob.messages.expect_none(message_pred(alice_jid, "in flight"), "and only once")
        await alice.ping()

        if len(env.nodes) >= 2:
            step("a resumption at another node of the pool is sent to the session's node")
            home = alice.address
            other = next(n for n in env.nodes if n != home)
            check(
                enabled["location"] == f"{home[0]}:{home[1]}",
                f"XEP-0198 5: <enabled location/> names the session's node {home}: {enabled}",
            )
            alice.kill_tcp()
            await alice.wait_disconnected("TCP connection killed before reconnecting elsewhere")
            bob.msg(alice_jid, "via another node")
            await bob.ping()
            alice.address = other
            await _reconnect(alice)
            await _sm_event(alice, "session_resumed", "resumed at the session's node after <see-other-host/>")
            check(alice.redirected_to == (home[0], home[1]), f"redirected to {home}, got {alice.redirected_to}")
            await alice.messages.wait(message_pred(bob_jid, "via another node"), "what arrived meanwhile")
            alice.address = home
            await alice.ping()

        step("<failed/> for an unknown id; the client binds a new session")
        carol = _sm_client(env, env.jid("carol") + "/c", "carol")
        carol.plugin["xep_0198"].sm_id = "no-such-session"
        await carol.login()
        failed = await _sm_event(carol, "sm_failed", "XEP-0198 5: <failed/> for an unknown previd")
        check(failed.xml.find(f"{{{STANZAS_NS}}}item-not-found") is not None, f"<item-not-found/>: {failed}")
        await _sm_event(carol, "sm_enabled", "stream management enabled on the new session")
        await carol.ping()

        step("a session that is not resumed in time ends; what it never acknowledged goes offline")
        alice.kill_tcp()
        await alice.wait_disconnected("TCP connection killed for good")
        bob.msg(alice_jid, "never acknowledged")
        await bob.presences.wait(
            presence_pred(alice_jid + "/phone", "unavailable"), "unavailable presence once the resumption wait ends", 15
        )
        alice2 = Client(env, alice_jid + "/laptop", label="alice2")
        try:
            await alice2.start()
            m = await alice2.messages.wait(
                message_pred(bob_jid, "never acknowledged"), "RFC 6121 8.5 / XEP-0198 5: the unacknowledged message stored offline"
            )
            check(m["to"].bare == alice_jid, f"offline copy addressed to alice: {m}")
        finally:
            await close_all([alice2])
    finally:
        await close_all([c for c in (alice, bob, carol) if c is not None])


# --------------------------------------------------------------------------
# XEP-0280 message carbons (in a pool, each client on the next node)
# --------------------------------------------------------------------------

NS_CARBONS = "urn:xmpp:carbons:2"


def _carbons_client(env: Env, jid: str, label: str) -> Client:
    c = Client(env, jid, label=label)
    c.register_plugin("xep_0280")
    c.carbons = Inbox(label, "carbon")
    c.add_event_handler("carbon_received", lambda m, c=c: c.carbons.push(("received", m)))
    c.add_event_handler("carbon_sent", lambda m, c=c: c.carbons.push(("sent", m)))
    return c


def _carbon_pred(direction: str, frm: str, to: str, body: str) -> Callable[[Any], bool]:
    def pred(item: Any) -> bool:
        d, m = item
        inner = m["carbon_received"] if d == "received" else m["carbon_sent"]
        return d == direction and inner["body"] == body and is_from(inner, frm) and inner["to"].bare == JID(to).bare

    return pred


@scenario("carbons")
async def sc_carbons(env: Env) -> None:
    alice_jid, bob_jid = env.jid("alice"), env.jid("bob")
    phone = _carbons_client(env, alice_jid + "/phone", "alice/phone")
    laptop = _carbons_client(env, alice_jid + "/laptop", "alice/laptop")
    tablet = _carbons_client(env, alice_jid + "/tablet", "alice/tablet")
    bob = Client(env, bob_jid + "/desk", label="bob")
    clients = [phone, laptop, tablet, bob]
    try:
        for c in clients:
            await c.start()
        info = await phone.plugin["xep_0030"].get_info(jid=env.domain, timeout=TIMEOUT)
        check(NS_CARBONS in info["disco_info"]["features"], "XEP-0280 3: the server advertises carbons")
        await phone.plugin["xep_0280"].enable(timeout=TIMEOUT)
        await laptop.plugin["xep_0280"].enable(timeout=TIMEOUT)
        # The tablet did not enable carbons: it gets nothing it did not take part in.

        step("a chat received by the phone is copied to the laptop")
        bob.msg(alice_jid + "/phone", "to the phone")
        await phone.messages.wait(message_pred(bob_jid, "to the phone"), "the message itself")
        await laptop.carbons.wait(
            _carbon_pred("received", bob_jid, alice_jid, "to the phone"), "XEP-0280 5: a received carbon"
        )

        step("a chat sent by the phone is copied to the laptop")
        phone.msg(bob_jid, "from the phone")
        await bob.messages.wait(message_pred(alice_jid, "from the phone"), "bob gets alice's message")
        await laptop.carbons.wait(_carbon_pred("sent", alice_jid, bob_jid, "from the phone"), "XEP-0280 6: a sent carbon")

        step("private messages, headlines and disabled resources get no copies")
        m = phone.Message()
        m["to"], m["type"], m["body"] = bob_jid, "chat", "private one"
        m.xml.append(ET.fromstring(f"<private xmlns='{NS_CARBONS}'/>"))
        m.xml.append(ET.fromstring("<no-copy xmlns='urn:xmpp:hints'/>"))
        m.send()
        await bob.messages.wait(message_pred(alice_jid, "private one"), "bob gets the private message")
        bob.msg(alice_jid + "/phone", "a headline", mtype="headline")
        await phone.messages.wait(message_pred(bob_jid, "a headline"), "the headline itself")
        await laptop.plugin["xep_0280"].disable(timeout=TIMEOUT)
        bob.msg(alice_jid + "/phone", "after disabling")
        await phone.messages.wait(message_pred(bob_jid, "after disabling"), "the message itself")
        await phone.ping()
        await laptop.ping()
        await laptop.carbons.expect_none(lambda item: True, "XEP-0280 7: no copy of private, headline or after disable")
        await tablet.carbons.expect_none(lambda item: True, "a resource without carbons gets no copies")
        await tablet.messages.expect_none(
            lambda m: m["body"] in ("to the phone", "from the phone", "after disabling"),
            "nor the messages of other resources",
        )
        await phone.carbons.expect_none(lambda item: True, "the resource that took part gets no copy of its own")
    finally:
        await close_all(clients)


# --------------------------------------------------------------------------
# XEP-0352 client state indication
# --------------------------------------------------------------------------


def _status_pred(frm: str, status: str) -> Callable[[Any], bool]:
    return lambda p: is_from(p, frm) and p["status"] == status


@scenario("csi")
async def sc_csi(env: Env) -> None:
    # carol and eve: in a pool this runs after stream_management, whose alice and bob are
    # already subscribed to each other. (The names below stay alice and bob.)
    alice_jid, bob_jid = env.jid("carol"), env.jid("eve")
    alice = Client(env, alice_jid + "/phone", label="alice")
    alice.register_plugin("xep_0352")
    bob = Client(env, bob_jid + "/desk", label="bob")
    bob.register_plugin("xep_0085")
    try:
        await alice.start()
        await bob.start()
        check(alice.plugin["xep_0352"].enabled, "XEP-0352 4: the server offers csi")
        await subscribe_handshake(alice, bob)
        bob_full = bob.boundjid.full

        step("inactive: presence and chat states wait, coalesced")
        alice.plugin["xep_0352"].send_inactive()
        await alice.ping()
        alice.presences.clear()
        for status in ("first", "second", "third"):
            bob.send_presence(pstatus=status)
        composing = bob.Message()
        composing["to"], composing["type"] = alice_jid + "/phone", "chat"
        composing["chat_state"] = "composing"
        composing.send()
        await bob.ping()
        await alice.presences.expect_none(lambda p: is_from(p, bob_full), "XEP-0352 6: presence held while inactive")
        await alice.messages.expect_none(lambda m: True, "a chat state alone is held while inactive", 0.1)
        await alice.ping()  # IQs are never held

        step("an urgent message brings what was held first, in order")
        bob.msg(alice_jid + "/phone", "wake up")
        m = await alice.messages.wait(message_pred(bob_jid, "wake up"), "XEP-0352: messages are delivered at once")
        held = [p for p in alice.presences.all(lambda p: is_from(p, bob_full))]
        check(
            [p["status"] for p in held] == ["third"],
            f"held presence coalesced to the latest: {[p['status'] for p in held]}",
        )
        kinds = [(k, s) for k, s in alice.received if is_from(s, bob_full)]
        order = [k if k == "presence" else (s["body"] or s["chat_state"]) for k, s in kinds[-3:]]
        check(order == ["presence", "composing", "wake up"], f"held stanzas come before the urgent one: {order}")
        check(m["body"] == "wake up", "the message itself")

        step("active again: what was held comes at once")
        alice.presences.clear()
        bob.send_presence(pstatus="fourth")
        await bob.ping()
        await alice.presences.expect_none(lambda p: is_from(p, bob_full), "still inactive", 0.5)
        alice.plugin["xep_0352"].send_active()
        await alice.presences.wait(_status_pred(bob_full, "fourth"), "XEP-0352: held presence on <active/>")
        bob.send_presence(pstatus="fifth")
        await alice.presences.wait(_status_pred(bob_full, "fifth"), "an active client gets presence at once", 3)
    finally:
        await close_all([alice, bob])


def main(argv: list[str]) -> int:
    parser = base_arg_parser(__doc__ or "")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--overall-timeout", type=float, default=90.0)
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    env = Env(args)
    step(f"scenario {args.scenario} (phase {env.phase}) against {env.host}:{env.port} domain={env.domain}")
    return run_scenario(SCENARIOS[args.scenario], env, args.overall_timeout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
