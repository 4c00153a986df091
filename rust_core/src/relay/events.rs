//! The normalised events between a relay's decoder and its encoder.
//!
//! A decoder turns one upstream SSE event into zero or more [`Event`]s (borrowing the event's
//! text); the relay meters them and hands them to the encoder of the client's protocol. A later
//! stage (guardrail redaction) fits between the two as one more [`Sink`].

/// Token usage in one shape for every protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every input token, cached or not (OpenAI `prompt_tokens`; Anthropic `input_tokens` +
    /// `cache_read_input_tokens` + `cache_creation_input_tokens`).
    pub prompt_tokens: u64,
    /// Output tokens (OpenAI `completion_tokens`, Anthropic `output_tokens`).
    pub completion_tokens: u64,
    /// Input tokens read from the cache.
    pub cached_tokens: u64,
    /// Reasoning tokens (part of the completion tokens).
    pub reasoning_tokens: u64,
    /// Input tokens written to the cache (Anthropic `cache_creation_input_tokens`).
    pub cache_creation_tokens: u64,
}

/// Why the model stopped, in the vocabulary of OpenAI chat completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A natural end or a stop sequence (Anthropic `end_turn`, `stop_sequence`, `pause_turn`).
    Stop,
    /// The output token limit (Anthropic `max_tokens`).
    Length,
    /// The model called tools (Anthropic `tool_use`).
    ToolCalls,
    /// The output was filtered or refused (Anthropic `refusal`).
    ContentFilter,
}

impl FinishReason {
    /// The OpenAI chat `finish_reason` (`function_call` reads as `tool_calls`; an unknown reason
    /// as `stop`).
    pub fn from_openai(reason: &str) -> Self {
        match reason {
            "length" => Self::Length,
            "tool_calls" | "function_call" => Self::ToolCalls,
            "content_filter" => Self::ContentFilter,
            _ => Self::Stop,
        }
    }

    /// The Anthropic `stop_reason` (an unknown reason reads as `stop`).
    pub fn from_anthropic(reason: &str) -> Self {
        match reason {
            "max_tokens" | "model_context_window_exceeded" => Self::Length,
            "tool_use" => Self::ToolCalls,
            "refusal" => Self::ContentFilter,
            _ => Self::Stop,
        }
    }

    /// The OpenAI chat `finish_reason`.
    pub fn openai(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
        }
    }

    /// The Anthropic `stop_reason`.
    pub fn anthropic(self) -> &'static str {
        match self {
            Self::Stop => "end_turn",
            Self::Length => "max_tokens",
            Self::ToolCalls => "tool_use",
            Self::ContentFilter => "refusal",
        }
    }
}

/// An error the upstream reported in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamError<'a> {
    /// The error's raw JSON (the `error` object; the whole event for a Responses `error`).
    pub raw: &'a str,
    /// Its message.
    pub message: &'a str,
    /// Its type (OpenAI `type`, Anthropic `error.type`), `""` when absent.
    pub kind: &'a str,
    /// Its code, when it has one.
    pub code: Option<&'a str>,
}

/// One normalised stream event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The upstream's answer begins (or, for an OpenAI source, another chunk arrived); `model`
    /// is the model the upstream names, `""` when it names none.
    Start {
        /// The upstream's response model.
        model: &'a str,
    },
    /// Answer text.
    Text(&'a str),
    /// Reasoning ("thinking") text.
    Reasoning(&'a str),
    /// Refusal text (OpenAI chat `delta.refusal`): the model declined, in words.
    Refusal(&'a str),
    /// A tool call begins; `call` numbers the calls of the answer from 0.
    ToolStart {
        /// The call's number.
        call: usize,
        /// The upstream's call id.
        id: &'a str,
        /// The function name.
        name: &'a str,
    },
    /// A fragment of a tool call's JSON arguments.
    ToolArgs {
        /// The call's number.
        call: usize,
        /// The fragment.
        fragment: &'a str,
    },
    /// Why the answer ended (it may still be followed by usage).
    Finish(FinishReason),
    /// The upstream's usage (the last one wins).
    Usage(Usage),
    /// The upstream's terminal event.
    Done,
    /// An upstream error: it ends the stream.
    Error(UpstreamError<'a>),
}

/// Where a decoder sends its events.
pub trait Sink {
    /// Takes the next event.
    fn emit(&mut self, event: Event<'_>);
}
