// The echo feature plugin of examples/plugins/echo-feature, in JavaScript (contract 0.2).
//
// Owns the component address jsecho.{domain} (see plugin.toml): every message body sent
// there comes back to its sender, and the service answers disco#info/items for itself.
// Built into a WebAssembly component with jco's QuickJS backend (see build.sh).
//
// The engine has no DOM and no XML parser, so a small namespace-aware one is below; it
// only needs to read what the host hands over (one serialized stanza).

// Host imports come from modules named after the WIT interfaces, functions in camelCase.
// Namespace (and named) imports work with both jco backends; a default import
// (`import log from ...`) with QuickJS only.
import * as log from "poolxmpp:plugin/log@0.2.0";
import * as router from "poolxmpp:plugin/router@0.2.0";

const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";
const NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items";
const NS_CLIENT = "jabber:client";

/** Escape text and attribute values (attributes are quoted with '). */
function escape(s) {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/'/g, "&apos;")
    .replace(/"/g, "&quot;");
}

/** ` k='v'` for every non-empty value. */
function attrs(kv) {
  return Object.entries(kv)
    .filter(([, v]) => v)
    .map(([k, v]) => ` ${k}='${escape(v)}'`)
    .join("");
}

/**
 * The error the host turns into the sender's error reply: a `stanza-error` record (enums are
 * their case names as strings, e.g. "bad-request"). Throwing it from an export makes it the
 * `err` of the `result`; `null` is an option's none (`type: null`: the condition's usual
 * error type).
 */
function fail(condition) {
  return { condition, type: null, text: null, application: null };
}

function send(xml) {
  try {
    router.send(xml);
  } catch (e) {
    // router.send returns result<_, send-error>: an error comes back as a thrown Error whose
    // `payload` is the variant, `{ tag: "malformed", val: "..." }`.
    log.write("warn", `cannot send: ${JSON.stringify(e.payload ?? String(e))}`);
    throw fail("internal-server-error");
  }
}

const ENTITIES = { amp: "&", lt: "<", gt: ">", apos: "'", quot: '"' };

function unescape(s) {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, e) => {
    if (e[0] === "#") {
      const code = e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return String.fromCodePoint(code);
    }
    if (!(e in ENTITIES)) throw new SyntaxError(`unknown entity ${whole}`);
    return ENTITIES[e];
  });
}

const TAG = /<(\/?)([^\s/>]+)((?:\s+[^\s=/>]+\s*=\s*(?:'[^']*'|"[^"]*"))*)\s*(\/?)>/y;
const ATTR = /([^\s=]+)\s*=\s*(?:'([^']*)'|"([^"]*)")/g;

/**
 * Parse one element into `{ name, ns, attrs, children, text }` (`name` without prefix, `ns`
 * resolved from xmlns declarations, the stream's default being jabber:client; `text` is the
 * element's own character data). Comments, processing instructions and CDATA never appear
 * in what the host serializes, so they are refused like any other malformed input.
 */
function parse(xml) {
  const root = { children: [], text: "", scope: { "": NS_CLIENT } };
  const stack = [root];
  let pos = 0;
  while (pos < xml.length) {
    const lt = xml.indexOf("<", pos);
    const end = lt < 0 ? xml.length : lt;
    if (end > pos) {
      const text = xml.slice(pos, end);
      if (stack.length === 1) {
        if (text.trim()) throw new SyntaxError("text outside the root element");
      } else {
        stack[stack.length - 1].text += unescape(text);
      }
      pos = end;
      continue;
    }
    TAG.lastIndex = pos;
    const m = TAG.exec(xml);
    if (!m) throw new SyntaxError(`malformed tag at ${pos}`);
    pos = TAG.lastIndex;
    const [, closing, qname, rawAttrs, selfClosing] = m;
    const parent = stack[stack.length - 1];
    if (closing) {
      if (rawAttrs || selfClosing || stack.length === 1 || parent.qname !== qname) {
        throw new SyntaxError(`unexpected </${qname}>`);
      }
      stack.pop();
      continue;
    }
    if (stack.length === 1 && root.children.length) throw new SyntaxError("two root elements");
    const scope = Object.assign({}, parent.scope);
    const attributes = {};
    for (const a of rawAttrs.matchAll(ATTR)) {
      const value = unescape(a[2] ?? a[3]);
      if (a[1] === "xmlns") scope[""] = value;
      else if (a[1].startsWith("xmlns:")) scope[a[1].slice(6)] = value;
      else attributes[a[1]] = value;
    }
    const colon = qname.indexOf(":");
    const prefix = colon < 0 ? "" : qname.slice(0, colon);
    if (!(prefix in scope)) throw new SyntaxError(`unbound prefix ${prefix}`);
    const el = {
      qname,
      name: qname.slice(colon + 1),
      ns: scope[prefix],
      attrs: attributes,
      children: [],
      text: "",
      scope,
    };
    parent.children.push(el);
    if (!selfClosing) stack.push(el);
  }
  if (stack.length !== 1 || root.children.length !== 1) throw new SyntaxError("unclosed element");
  return root.children[0];
}

function echo(stanza, type, root) {
  const body = root.children.find((c) => c.name === "body" && c.ns === NS_CLIENT);
  if (!body) return; // chat states, receipts, ...: nothing to echo
  const head = attrs({ from: stanza.to, to: stanza.from, id: stanza.id, type });
  send(`<message xmlns='${NS_CLIENT}'${head}><body>${escape(body.text)}</body></message>`);
}

function iq(stanza, type, root) {
  const payload = root.children[0];
  if (!payload) throw fail("bad-request");
  const head = attrs({ from: stanza.to, to: stanza.from, id: stanza.id, type: "result" });
  let query;
  if (type === "get" && payload.name === "query" && payload.ns === NS_DISCO_INFO) {
    query =
      `<query xmlns='${NS_DISCO_INFO}'>` +
      "<identity category='component' type='generic' name='JavaScript echo'/>" +
      `<feature var='${NS_DISCO_INFO}'/></query>`;
  } else if (type === "get" && payload.name === "query" && payload.ns === NS_DISCO_ITEMS) {
    query = `<query xmlns='${NS_DISCO_ITEMS}'/>`;
  } else {
    throw fail("service-unavailable");
  }
  send(`<iq xmlns='${NS_CLIENT}'${head}>${query}</iq>`);
}

// The world's `export feature-plugin` interface: an object named in camelCase whose
// functions are the interface's, also in camelCase.
export const featurePlugin = {
  // config: list<tuple<string, string>>, i.e. an array of [key, value] arrays.
  init(config) {
    log.write("info", "javascript echo ready");
  },

  handleStanza(stanza) {
    // The header is typed: `type` is the variant stanza-type, `{ tag: kind, val: type }`;
    // `to` and `id` are options (null when absent). Messages and IQ requests are answered;
    // errors, IQ results and presence are not.
    const { tag: kind, val: type } = stanza.type;
    const answered = (kind === "message" && type !== "error") || (kind === "iq" && (type === "get" || type === "set"));
    if (!answered) return;
    let root;
    try {
      root = parse(stanza.xml);
    } catch (e) {
      log.write("debug", `unparsable stanza: ${e.message}`);
      throw fail("bad-request");
    }
    if (kind === "message") echo(stanza, type, root);
    else iq(stanza, type, root);
  },

  onEvent(event) {},
};
