//! W3C trace context (`traceparent`) across Herald's spans.
//!
//! The libraries only parse and format `traceparent`. When the binary exports spans (OTLP), it
//! installs a [`SpanContexts`] bridge once at start, so that Herald's `tracing` spans join the
//! producer's trace and the `traceparent` Herald sends on names a span that was exported.
//! Without a bridge, each delivery attempt still gets a fresh span id under the producer's trace.

use std::fmt;
use std::sync::OnceLock;

use tracing::Span;

/// A parsed W3C `traceparent` (version 00).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero.
    pub span_id: String,
    pub flags: u8,
}

impl TraceParent {
    /// `None` for anything but a valid version-00 header.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes().all(|b| b.is_ascii_hexdigit())
                && s.bytes().any(|b| b != b'0')
        };
        if parts.next().is_some() || version != "00" || !hex(trace, 32) || !hex(span, 16) {
            return None;
        }
        if flags.len() != 2 {
            return None;
        }
        Some(Self {
            trace_id: trace.to_ascii_lowercase(),
            span_id: span.to_ascii_lowercase(),
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// A new span in the same trace, keeping the flags.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: random_hex(16),
            flags: self.flags,
        }
    }

    /// The first span of a new, unsampled trace.
    pub fn new_root() -> Self {
        Self {
            trace_id: random_hex(32),
            span_id: random_hex(16),
            flags: 0,
        }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// Random ids from v4 UUIDs (122 random bits): 32 hex digits, or the first 16.
fn random_hex(len: usize) -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(len);
    id
}

/// How the span exporter's contexts are read and set; installed by the binary.
pub trait SpanContexts: Send + Sync + 'static {
    /// Makes `parent` (a remote span) the parent of `span`, before `span` is first entered.
    fn set_parent(&self, span: &Span, parent: &TraceParent);
    /// The exported identity of `span`, if it has one.
    fn context_of(&self, span: &Span) -> Option<TraceParent>;
}

static BRIDGE: OnceLock<Box<dyn SpanContexts>> = OnceLock::new();

/// Installs the exporter's bridge; only the first call has an effect.
pub fn install(bridge: Box<dyn SpanContexts>) {
    let _ = BRIDGE.set(bridge);
}

/// Whether a per-request span (ingress, append, delivery attempt) is worth creating: its
/// spans are exported, or debug logs are on. Otherwise no one sees it, and creating it is
/// not free: the log layer formats a span's fields when the span is made, which was about
/// 7 % of the instructions of an ingress request at the default `info` level.
pub fn spans_wanted() -> bool {
    BRIDGE.get().is_some() || tracing::enabled!(tracing::Level::DEBUG)
}

/// Joins `span` to the trace named by `parent` (a `traceparent` value), if exporting.
pub fn continue_trace(span: &Span, parent: Option<&str>) {
    if let (Some(bridge), Some(parent)) = (BRIDGE.get(), parent.and_then(TraceParent::parse)) {
        bridge.set_parent(span, &parent);
    }
}

/// The `traceparent` to send on from inside `span`: the span's own exported identity, else a
/// new span id under `parent`, else a new trace.
pub fn outgoing(span: &Span, parent: Option<&str>) -> TraceParent {
    if let Some(own) = BRIDGE.get().and_then(|bridge| bridge.context_of(span)) {
        return own;
    }
    match parent.and_then(TraceParent::parse) {
        Some(parent) => parent.child(),
        None => TraceParent::new_root(),
    }
}

/// The exported identity of the current span, when spans are exported.
pub fn current() -> Option<TraceParent> {
    BRIDGE.get()?.context_of(&Span::current())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_version_00() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(text).unwrap();
        assert_eq!(parsed.flags, 1);
        assert_eq!(parsed.to_string(), text);
        for bad in [
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn without_an_exporter_each_hop_is_a_new_span_of_the_same_trace() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let child = outgoing(&Span::none(), Some(parent));
        assert_eq!(child.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(child.span_id, "00f067aa0ba902b7");
        assert_eq!(child.flags, 1);
        let root = outgoing(&Span::none(), Some("garbage"));
        assert!(TraceParent::parse(&root.to_string()).is_some(), "{root}");
        assert_eq!(root.flags, 0);
        assert_ne!(root.span_id, outgoing(&Span::none(), None).span_id);
    }
}
