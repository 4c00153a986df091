//! `ferrogate_core`: the Rust core of the ferrogate AI gateway.
//!
//! Plain Rust modules usable (and tested) without Python; the PyO3 layer that turns them
//! into the `ferrogate._core` extension module lives in [`py`] behind the `python` feature.
//!
//! - [`sse`]: incremental server-sent-events parser and the chat-completions stream meter
//!   used by the *respond* phase.
//! - [`relay`]: the stream relay of the *respond* phase: SSE in, metered and translated between
//!   OpenAI chat, Anthropic Messages and OpenAI Responses, SSE out.
//! - [`tokens`]: OpenAI tokenizers (o200k_base, cl100k_base) and the chat prompt overhead rule.
//! - [`ratelimit`]: cost-weighted GCRA buckets in a bounded table shared by worker processes,
//!   used by the *limit* phase.
//! - [`scan`]: guardrail scanning (secrets, PII, deny patterns) of text, JSON bodies and streams.
//! - [`schema`]: JSON-schema validation of structured answers (the *respond* phase).
//! - [`audit`]: the audit trail's record hash (canonical JSON, SHA-256).
//! - [`policy`]: routing rules (Cedar policies) that make deployments eligible and score them, used
//!   by the *route* phase.
//! - [`error`]: one error enum per component.

pub mod audit;
pub mod circuit;
pub mod error;
pub mod policy;
pub mod ratelimit;
pub mod relay;
pub mod scan;
pub mod schema;
pub mod sse;
pub mod tokens;

#[cfg(feature = "python")]
pub mod py;

#[cfg(feature = "python")]
pub use py::_core;
