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
