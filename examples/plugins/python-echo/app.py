"""The echo feature plugin of examples/plugins/echo-feature, in Python (contract 0.2).

Owns the component address pyecho.{domain} (see plugin.toml): every message body sent
there comes back to its sender, and the service answers disco#info for itself. Built
into a WebAssembly component with componentize-py (see build.sh).
"""

import xml.etree.ElementTree as ET
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, router
from wit_world.imports.types import (
    Condition,
    Event,
    IqType,
    LogLevel,
    MessageType,
    Stanza,
    StanzaError,
    StanzaType_Iq,
    StanzaType_Message,
)

NS_CLIENT = "jabber:client"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


def escape(s: str) -> str:
    """Escape text and attribute values (attributes are quoted with ')."""
    return (
        s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;").replace('"', "&quot;")
    )


def attrs(**kv: Optional[str]) -> str:
    return "".join(f" {k}='{escape(v)}'" for k, v in kv.items() if v)


def fail(condition: Condition) -> Err:
    """The error the host turns into the sender's error reply (of the condition's usual type)."""
    return Err(StanzaError(condition=condition, type=None, text=None, application=None))


def send(xml: str) -> None:
    try:
        router.send(xml)
    except Err as e:
        log.write(LogLevel.WARN, f"cannot send: {e.value}")
        raise fail(Condition.INTERNAL_SERVER_ERROR)


class FeaturePlugin(exports.FeaturePlugin):
    def init(self, config: List[Tuple[str, str]]) -> None:
        log.write(LogLevel.INFO, "python echo ready")

    def handle_stanza(self, stanza: Stanza) -> None:
        # The header is typed: messages and IQ requests are answered; errors, IQ results
        # and presence are not.
        t = stanza.type
        if isinstance(t, StanzaType_Message) and t.value != MessageType.ERROR:
            self.echo(stanza, t.value, self.parse(stanza))
        elif isinstance(t, StanzaType_Iq) and t.value in (IqType.GET, IqType.SET):
            self.iq(stanza, t.value, self.parse(stanza))

    @staticmethod
    def parse(stanza: Stanza) -> ET.Element:
        try:
            return ET.fromstring(stanza.xml)
        except ET.ParseError:
            raise fail(Condition.BAD_REQUEST)

    def echo(self, stanza: Stanza, kind: MessageType, root: ET.Element) -> None:
        # The stanza's root declares xmlns='jabber:client', so ElementTree sees qualified names.
        body = root.find(f"{{{NS_CLIENT}}}body")
        if body is None:
            return
        head = attrs(**{"from": stanza.to, "to": stanza.from_, "id": stanza.id, "type": kind.name.lower()})
        send(f"<message xmlns='{NS_CLIENT}'{head}><body>{escape(body.text or '')}</body></message>")

    def iq(self, stanza: Stanza, kind: IqType, root: ET.Element) -> None:
        payload = next(iter(root), None)
        if payload is None:
            raise fail(Condition.BAD_REQUEST)
        head = attrs(**{"from": stanza.to, "to": stanza.from_, "id": stanza.id, "type": "result"})
        if kind == IqType.GET and payload.tag == f"{{{NS_DISCO_INFO}}}query":
            query = (
                f"<query xmlns='{NS_DISCO_INFO}'>"
                "<identity category='component' type='generic' name='Python echo'/>"
                f"<feature var='{NS_DISCO_INFO}'/></query>"
            )
        elif kind == IqType.GET and payload.tag == f"{{{NS_DISCO_ITEMS}}}query":
            query = f"<query xmlns='{NS_DISCO_ITEMS}'/>"
        else:
            raise fail(Condition.SERVICE_UNAVAILABLE)
        send(f"<iq xmlns='{NS_CLIENT}'{head}>{query}</iq>")

    def on_event(self, event: Event) -> None:
        pass
