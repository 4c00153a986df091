//! Error types, one `thiserror` enum per component.
//!
//! They are plain Rust errors; `py/errors.rs` translates each of them, in one place, into the
//! typed Python exception hierarchy of `ferrogate._core` (`CoreError` and its subclasses).

/// Errors of the incremental SSE parser ([`crate::sse::SseParser`]) and of the stream meter
/// built on it.
///
/// Both are fatal for the stream: the parser keeps returning the same error afterwards, since a
/// stream that broke a bound is not trusted again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A single line (of any field, or a comment) is longer than the configured bound.
    #[error("SSE line longer than the limit of {limit} bytes")]
    LineTooLong {
        /// The configured `max_event_bytes`.
        limit: usize,
    },
    /// The data buffered for one event is larger than the configured bound.
    #[error("SSE event larger than the limit of {limit} bytes")]
    EventTooLarge {
        /// The configured `max_event_bytes`.
        limit: usize,
    },
}

/// Errors of the tokenizer component ([`crate::tokens`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The encoding name is not one this build bundles (`o200k_base`, `cl100k_base`).
    #[error("unknown encoding {0:?}: expected \"o200k_base\" or \"cl100k_base\"")]
    UnknownEncoding(String),
    /// A chat request body could not be read as an OpenAI chat-completions request.
    #[error("invalid chat request body: {0}")]
    InvalidBody(String),
}

/// Errors of the rate limiter ([`crate::ratelimit`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A limit, period or cost that is not a usable number (non-finite, not positive, ...).
    #[error("invalid rate: {0}")]
    InvalidRate(String),
    /// A table capacity of 0, or too large to map.
    #[error("invalid limiter capacity {0}: expected 1 to 268435456 slots")]
    InvalidCapacity(usize),
    /// The shared table's file could not be created, locked, sized or mapped.
    #[error("limiter table {path}: {message}")]
    Io {
        /// The file's path.
        path: String,
        /// What failed (the OS error).
        message: String,
    },
    /// The file exists but is not a limiter table of this version and capacity.
    #[error("limiter table {path} has the wrong layout: {message}")]
    Layout {
        /// The file's path.
        path: String,
        /// What does not match.
        message: String,
    },
    /// This CPU has no lock-free 128-bit compare-and-swap, which the shared table needs.
    #[error("shared limiter table unsupported on this machine: {0}")]
    Unsupported(String),
}

/// Errors of setting up a stream relay ([`crate::relay::StreamRelay`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// A protocol name that is not `openai.chat`, `anthropic.messages` or `openai.responses`.
    #[error(
        "unknown stream protocol {0:?}: expected \"openai.chat\", \"anthropic.messages\" or \"openai.responses\""
    )]
    UnknownProtocol(String),
    /// A pair of protocols the relay does not translate.
    #[error("unsupported stream relay {from} -> {to}")]
    UnsupportedPair {
        /// The upstream's protocol.
        from: &'static str,
        /// The client's protocol.
        to: &'static str,
    },
}

/// A guardrail rule that does not compile ([`crate::scan::Scanner::new`]): a bad regex (of the rule or of
/// its allowlist), a secret group the regex does not have, a duplicate id, a bad entropy or length bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {id:?} (index {index}): {message}")]
pub struct RuleError {
    /// The rule's position in the list given to the scanner.
    pub index: usize,
    /// The rule's id.
    pub id: String,
    /// What is wrong (the regex error, verbatim, for a bad regex).
    pub message: String,
}

/// Errors of scanning with a guardrail policy ([`crate::scan`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// A policy's action bytes do not match the scanner's rules.
    #[error("invalid guardrail actions: {0}")]
    InvalidActions(String),
    /// A request body given to `scan_json` is not a JSON document (or nests deeper than the bound).
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
}
