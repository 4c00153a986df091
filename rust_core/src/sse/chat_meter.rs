//! The *respond* phase's stream meter for OpenAI chat-completions streams.
//!
//! [`ChatStreamMeter`] is fed the raw upstream bytes (any chunk split) while they are passed
//! through to the client. For each `data:` event it picks out, in one streaming pass of
//! `serde_json` (no DOM, no allocation per chunk except the first `model` string and an upstream
//! `error`):
//! - `usage` when non-null (prompt, completion, cached and reasoning tokens),
//! - the response `model`,
//! - an upstream `error` object, kept as raw JSON,
//! - the text of `choices[*].delta.content`, `delta.reasoning_content` and
//!   `delta.tool_calls[*].function.{name,arguments}`, appended to one buffer so completion
//!   tokens can be counted when the upstream sends no usage.
//!
//! `data: [DONE]` is recorded, not parsed. Data that is not a JSON object is counted as
//! malformed and otherwise ignored: metering never breaks a stream.

use super::chat_chunk::{read_chunk, ChunkTarget};
use super::parser::{EventRef, SseParser, DEFAULT_MAX_EVENT_BYTES};
use crate::error::SseError;
use crate::tokens::Encoding;

/// Token usage as reported by the upstream in its final chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `usage.prompt_tokens`.
    pub prompt_tokens: u64,
    /// `usage.completion_tokens`.
    pub completion_tokens: u64,
    /// `usage.prompt_tokens_details.cached_tokens` (0 when absent).
    pub cached_tokens: u64,
    /// `usage.completion_tokens_details.reasoning_tokens` (0 when absent).
    pub reasoning_tokens: u64,
}

/// Meters one OpenAI chat-completions SSE stream. One per response.
#[derive(Debug, Clone)]
pub struct ChatStreamMeter {
    parser: SseParser,
    encoding: Encoding,
    state: MeterState,
}

#[derive(Debug, Clone, Default)]
struct MeterState {
    usage: Option<Usage>,
    model: Option<String>,
    done: bool,
    error: Option<String>,
    text: String,
    malformed: u64,
}

impl ChatStreamMeter {
    /// A meter counting completion text with `encoding`, with the default event bound.
    pub fn new(encoding: Encoding) -> Self {
        Self::with_max_event_bytes(encoding, DEFAULT_MAX_EVENT_BYTES)
    }

    /// A meter whose SSE parser bounds one event to `max_event_bytes`.
    pub fn with_max_event_bytes(encoding: Encoding, max_event_bytes: usize) -> Self {
        Self {
            parser: SseParser::new(max_event_bytes),
            encoding,
            state: MeterState::default(),
        }
    }

    /// Feeds the next chunk of upstream bytes. Errors only when the stream breaks the event
    /// size bound.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        let state = &mut self.state;
        self.parser.feed_with(chunk, |event| state.on_event(&event))
    }

    /// Ends the stream: an unterminated final event is still metered.
    pub fn finish(&mut self) -> Result<(), SseError> {
        let state = &mut self.state;
        self.parser.finish_with(|event| state.on_event(&event))
    }

    /// The last non-null `usage` seen, if any.
    pub fn usage(&self) -> Option<Usage> {
        self.state.usage
    }

    /// The response `model` (the first non-empty one seen).
    pub fn model(&self) -> Option<&str> {
        self.state.model.as_deref()
    }

    /// Whether `data: [DONE]` has been seen.
    pub fn done(&self) -> bool {
        self.state.done
    }

    /// The raw JSON of the last upstream `error` value, if the upstream sent one.
    pub fn error(&self) -> Option<&str> {
        self.state.error.as_deref()
    }

    /// The accumulated completion text (content, reasoning content, tool call names and
    /// arguments, in stream order).
    pub fn completion_text(&self) -> &str {
        &self.state.text
    }

    /// How many `data` events were neither `[DONE]` nor a readable JSON object.
    pub fn malformed_events(&self) -> u64 {
        self.state.malformed
    }

    /// The encoding used by [`Self::count_completion_tokens`].
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Counts the tokens of [`Self::completion_text`]: the fallback when no usage arrived.
    pub fn count_completion_tokens(&self) -> usize {
        self.encoding.count(&self.state.text)
    }
}

impl MeterState {
    fn on_event(&mut self, event: &EventRef<'_>) {
        let data = event.data.trim_ascii();
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        if !data.starts_with('{') {
            self.malformed += 1;
            return;
        }
        let target = ChunkTarget {
            usage: &mut self.usage,
            model: &mut self.model,
            error: &mut self.error,
            text: &mut self.text,
        };
        if read_chunk(data, target).is_err() {
            self.malformed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" w\\u00f6rld\\n\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":4,\"total_tokens\":16,\"prompt_tokens_details\":{\"cached_tokens\":3,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":1,\"audio_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    fn metered(input: &str) -> ChatStreamMeter {
        let mut meter = ChatStreamMeter::new(Encoding::O200kBase);
        assert_eq!(meter.feed(input.as_bytes()), Ok(()));
        assert_eq!(meter.finish(), Ok(()));
        meter
    }

    #[test]
    fn picks_usage_model_text_and_done() {
        let meter = metered(STREAM);
        assert_eq!(
            meter.usage(),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 4,
                cached_tokens: 3,
                reasoning_tokens: 1
            })
        );
        assert_eq!(meter.model(), Some("gpt-4o-2024-08-06"));
        assert!(meter.done());
        assert_eq!(meter.error(), None);
        assert_eq!(meter.completion_text(), "Hello w\u{f6}rld\n");
        assert_eq!(meter.malformed_events(), 0);
    }

    #[test]
    fn tool_calls_and_reasoning_are_accumulated() {
        let meter = metered(concat!(
            "data: {\"model\":\"m\",\"choices\":[{\"delta\":{\"reasoning_content\":\"think \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"t\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}\n\n",
        ));
        assert_eq!(
            meter.completion_text(),
            "think get_weather{\"city\":\"Paris\"}"
        );
        assert_eq!(meter.usage(), None);
        assert!(!meter.done());
        assert!(meter.count_completion_tokens() > 5);
    }

    #[test]
    fn upstream_error_is_kept_raw() {
        let meter = metered(
            "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":null}}\n\n",
        );
        assert_eq!(
            meter.error(),
            Some("{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":null}")
        );
    }

    #[test]
    fn malformed_data_is_counted_not_fatal() {
        let meter = metered("data: not json\n\ndata: {\"choices\": 5}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\n");
        assert_eq!(meter.malformed_events(), 2);
        assert_eq!(meter.completion_text(), "ok");
    }

    #[test]
    fn null_fields_are_skipped() {
        let meter = metered("data: {\"model\":null,\"error\":null,\"usage\":null,\"choices\":null}\n\ndata: {\"model\":\"x\",\"choices\":[{\"delta\":null},{\"delta\":{\"content\":null,\"tool_calls\":null}}]}\n\n");
        assert_eq!(meter.malformed_events(), 0);
        assert_eq!(meter.model(), Some("x"));
        assert_eq!(meter.error(), None);
        assert_eq!(meter.completion_text(), "");
    }

    #[test]
    fn every_two_way_split_meters_the_same() {
        let whole = metered(STREAM);
        for cut in 0..=STREAM.len() {
            let mut meter = ChatStreamMeter::new(Encoding::O200kBase);
            assert_eq!(meter.feed(&STREAM.as_bytes()[..cut]), Ok(()));
            assert_eq!(meter.feed(&STREAM.as_bytes()[cut..]), Ok(()));
            assert_eq!(meter.finish(), Ok(()));
            assert_eq!(meter.usage(), whole.usage());
            assert_eq!(meter.completion_text(), whole.completion_text());
            assert_eq!(meter.model(), whole.model());
            assert!(meter.done());
        }
    }

    #[test]
    fn oversize_event_is_an_error() {
        let mut meter = ChatStreamMeter::with_max_event_bytes(Encoding::O200kBase, 32);
        let result = meter.feed(STREAM.as_bytes());
        assert_eq!(result, Err(SseError::LineTooLong { limit: 32 }));
    }
}
