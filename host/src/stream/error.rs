//! Stream-level errors (RFC 6120 §4.9): every way a stream can fail maps to one condition here.

pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamErrorCondition {
    #[error("bad-format")]
    BadFormat,
    #[error("conflict")]
    Conflict,
    #[error("connection-timeout")]
    ConnectionTimeout,
    #[error("host-unknown")]
    HostUnknown,
    #[error("internal-server-error")]
    InternalServerError,
    #[error("invalid-from")]
    InvalidFrom,
    #[error("invalid-namespace")]
    InvalidNamespace,
    #[error("invalid-xml")]
    InvalidXml,
    #[error("not-authorized")]
    NotAuthorized,
    #[error("not-well-formed")]
    NotWellFormed,
    #[error("policy-violation")]
    PolicyViolation,
    #[error("reset")]
    Reset,
    #[error("resource-constraint")]
    ResourceConstraint,
    #[error("restricted-xml")]
    RestrictedXml,
    #[error("see-other-host")]
    SeeOtherHost,
    #[error("system-shutdown")]
    SystemShutdown,
    #[error("undefined-condition")]
    UndefinedCondition,
    #[error("unsupported-encoding")]
    UnsupportedEncoding,
    #[error("unsupported-stanza-type")]
    UnsupportedStanzaType,
    #[error("unsupported-version")]
    UnsupportedVersion,
}

/// A stream error with optional human-readable text.
#[derive(Debug, Clone, thiserror::Error)]
#[error("stream error {condition}: {text}")]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: String,
    /// Character data of the condition element: the `host:port` of `<see-other-host/>`.
    pub content: Option<String>,
    /// An application-specific condition (RFC 6120 §4.9.4), serialized, e.g. XEP-0198's
    /// `<handled-count-too-high/>`.
    pub application: Option<String>,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: text.into(),
            content: None,
            application: None,
        }
    }

    /// With an application-specific condition element (serialized XML).
    pub fn with_application(mut self, xml: String) -> Self {
        self.application = Some(xml);
        self
    }

    /// RFC 6120 §4.9.3.19: reconnect to `host_port` (an IPv6 literal in brackets).
    pub fn see_other_host(host_port: impl Into<String>, text: impl Into<String>) -> Self {
        StreamError {
            condition: StreamErrorCondition::SeeOtherHost,
            text: text.into(),
            content: Some(host_port.into()),
            application: None,
        }
    }

    /// The `<stream:error>` element; serialized with the `stream:` prefix by the writer.
    pub fn to_xml(&self) -> String {
        let mut out = String::from("<stream:error><");
        out.push_str(&self.condition.to_string());
        out.push_str(" xmlns='");
        out.push_str(NS_STREAM_ERRORS);
        match &self.content {
            Some(content) => {
                out.push_str("'>");
                crate::xml::escape_into(&mut out, content);
                out.push_str("</");
                out.push_str(&self.condition.to_string());
                out.push('>');
            }
            None => out.push_str("'/>"),
        }
        if !self.text.is_empty() {
            out.push_str("<text xmlns='");
            out.push_str(NS_STREAM_ERRORS);
            out.push_str("'>");
            crate::xml::escape_into(&mut out, &self.text);
            out.push_str("</text>");
        }
        if let Some(application) = &self.application {
            out.push_str(application);
        }
        out.push_str("</stream:error>");
        out
    }
}
