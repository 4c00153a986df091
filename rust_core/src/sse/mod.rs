//! Server-sent events: the incremental parser and the helpers of the *respond* phase.
//!
//! - [`parser`]: bytes in (any chunk split), complete events out, per the WHATWG
//!   event-stream rules, with a bound on the size of one event.
//! - [`chat_meter`]: fed the raw bytes of an OpenAI chat-completions stream, picks out usage,
//!   model, upstream errors and the completion text, for accounting.

mod chat_chunk;
pub mod chat_meter;
pub mod parser;

pub use chat_meter::{ChatStreamMeter, Usage};
pub use parser::{Block, EventRef, SseEvent, SseParser, DEFAULT_MAX_EVENT_BYTES};
