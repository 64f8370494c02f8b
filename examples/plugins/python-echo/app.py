"""The echo feature plugin of examples/plugins/echo-feature, in Python.

Owns the component address pyecho.{domain} (see plugin.toml): every message body sent
there comes back to its sender, and the service answers disco#info for itself. Built
into a WebAssembly component with componentize-py (see build.sh).
"""

import xml.etree.ElementTree as ET
from typing import List, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, router
from wit_world.imports.types import ErrorType, Event, LogLevel, Stanza, StanzaError, StanzaKind

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


def escape(s: str) -> str:
    """Escape text and attribute values (attributes are quoted with ')."""
    return (
        s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;").replace('"', "&quot;")
    )


def attrs(**kv: str) -> str:
    return "".join(f" {k}='{escape(v)}'" for k, v in kv.items() if v)


def fail(condition: str, kind: ErrorType = ErrorType.CANCEL) -> Err:
    """The error the host turns into the sender's error reply."""
    return Err(StanzaError(type=kind, condition=condition, text=None))


def send(xml: str) -> None:
    try:
        router.send(xml)
    except Err as e:
        log.write(LogLevel.WARN, f"cannot send: {e.value}")
        raise fail("internal-server-error")


class FeaturePlugin(exports.FeaturePlugin):
    def init(self, config: List[Tuple[str, str]]) -> None:
        log.write(LogLevel.INFO, "python echo ready")

    def handle_stanza(self, stanza: Stanza) -> None:
        # Never answer errors or IQ results; presence is not echoed.
        if stanza.type in ("error", "result") or stanza.kind == StanzaKind.PRESENCE:
            return
        try:
            root = ET.fromstring(stanza.xml)
        except ET.ParseError:
            raise fail("bad-request", ErrorType.MODIFY)
        if stanza.kind == StanzaKind.MESSAGE:
            self.echo(stanza, root)
        else:
            self.iq(stanza, root)

    def echo(self, stanza: Stanza, root: ET.Element) -> None:
        # The host writes stanzas without xmlns='jabber:client', so <body/> is unqualified.
        body = root.find("body")
        if body is None:
            return
        kind = stanza.type or "normal"
        head = attrs(**{"from": stanza.to, "to": stanza.from_, "id": stanza.id, "type": kind})
        send(f"<message{head}><body>{escape(body.text or '')}</body></message>")

    def iq(self, stanza: Stanza, root: ET.Element) -> None:
        payload = next(iter(root), None)
        if payload is None:
            raise fail("bad-request", ErrorType.MODIFY)
        head = attrs(**{"from": stanza.to, "to": stanza.from_, "id": stanza.id, "type": "result"})
        if stanza.type == "get" and payload.tag == f"{{{NS_DISCO_INFO}}}query":
            query = (
                f"<query xmlns='{NS_DISCO_INFO}'>"
                "<identity category='component' type='generic' name='Python echo'/>"
                f"<feature var='{NS_DISCO_INFO}'/></query>"
            )
        elif stanza.type == "get" and payload.tag == f"{{{NS_DISCO_ITEMS}}}query":
            query = f"<query xmlns='{NS_DISCO_ITEMS}'/>"
        else:
            raise fail("service-unavailable")
        send(f"<iq{head}>{query}</iq>")

    def on_event(self, event: Event) -> None:
        pass
