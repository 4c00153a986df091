//! Decoder of OpenAI Responses streams, for metering a passthrough: the model
//! (`response.created`), `response.output_text.delta` and `response.function_call_arguments.delta`
//! text, the usage and end of `response.completed|failed|incomplete`, and `error` events.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::events::{Event, Sink, UpstreamError, Usage};
use super::Outcome;

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(default)]
    sequence_number: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    response: Option<Response<'a>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
    #[serde(default)]
    cache_write_tokens: u64,
}

#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

impl From<&RawUsage> for Usage {
    fn from(raw: &RawUsage) -> Self {
        let input = raw.input_tokens_details.as_ref();
        Self {
            prompt_tokens: raw.input_tokens,
            completion_tokens: raw.output_tokens,
            cached_tokens: input.map_or(0, |d| d.cached_tokens),
            reasoning_tokens: raw
                .output_tokens_details
                .as_ref()
                .map_or(0, |d| d.reasoning_tokens),
            cache_creation_tokens: input.map_or(0, |d| d.cache_write_tokens),
        }
    }
}

/// Decodes one OpenAI Responses stream. One per stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResponsesDecoder {
    /// The last `sequence_number` seen.
    last_sequence: Option<u64>,
}

impl ResponsesDecoder {
    /// Takes the `sequence_number` for an event the relay adds after the upstream's.
    pub(crate) fn take_sequence(&mut self) -> u64 {
        let sequence = self.last_sequence.map_or(0, |last| last + 1);
        self.last_sequence = Some(sequence);
        sequence
    }

    /// Decodes the data of one SSE event.
    pub(crate) fn decode(&mut self, data: &str, sink: &mut impl Sink) -> Outcome {
        let Ok(event) = serde_json::from_str::<Data<'_>>(data) else {
            return Outcome::Malformed;
        };
        if let Some(sequence) = event.sequence_number {
            self.last_sequence = Some(sequence);
        }
        match &*event.kind {
            "response.created" | "response.in_progress" | "response.queued" => {
                if let Some(response) = &event.response {
                    sink.emit(Event::Start {
                        model: response.model.as_deref().unwrap_or(""),
                    });
                }
            }
            "response.output_text.delta" => {
                if let Some(text) = event.delta.as_deref().filter(|t| !t.is_empty()) {
                    sink.emit(Event::Text(text));
                }
            }
            "response.function_call_arguments.delta" => {
                if let Some(fragment) = event.delta.as_deref().filter(|t| !t.is_empty()) {
                    sink.emit(Event::ToolArgs { call: 0, fragment });
                }
            }
            "response.completed" | "response.failed" | "response.incomplete" => {
                if let Some(response) = &event.response {
                    sink.emit(Event::Start {
                        model: response.model.as_deref().unwrap_or(""),
                    });
                    if let Some(usage) = &response.usage {
                        sink.emit(Event::Usage(usage.into()));
                    }
                    if let Some(error) = response.error {
                        sink.emit(Event::Error(UpstreamError {
                            raw: error.get(),
                            message: "",
                            kind: "",
                            code: None,
                        }));
                    }
                }
                sink.emit(Event::Done);
            }
            "error" => sink.emit(Event::Error(UpstreamError {
                raw: data,
                message: event.message.as_deref().unwrap_or(""),
                kind: "",
                code: event.code.as_deref(),
            })),
            _ => {}
        }
        Outcome::Kept
    }
}
