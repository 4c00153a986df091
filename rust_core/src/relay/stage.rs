//! The relay's middle stage: meters every normalised event (text, usage, model, errors), ends
//! the stream on the source's terminal event (synthesizing usage when the client's stream must
//! carry it and the upstream sent none), and hands the events to the target's encoder, through
//! the [`super::redact`] stage when the relay has a guard (the meter counts what the upstream
//! produced; the client gets the redacted text).

use super::encode_anthropic::MessagesEncoder;
use super::encode_openai::ChatEncoder;
use super::encode_responses::ResponsesEncoder;
use super::events::{Event, Sink, Usage};
use super::redact::Redact;
use super::{Protocol, RelayConfig};

/// What a stream has said so far, for accounting.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meter {
    pub(crate) usage: Option<Usage>,
    pub(crate) usage_counted: bool,
    pub(crate) model: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) text: String,
    pub(crate) malformed: u64,
    /// The source's terminal event (or an error) was seen.
    pub(crate) done: bool,
    /// The first `Start` was passed on.
    started: bool,
}

impl Meter {
    /// The usage to report at the end: the upstream's, else (when `needed`) one counted from the
    /// completion text and the caller's prompt tokens.
    fn final_usage(&mut self, config: &RelayConfig, needed: bool) -> Option<Usage> {
        if self.usage.is_none() && needed {
            self.usage = Some(Usage {
                prompt_tokens: config.prompt_tokens,
                completion_tokens: config.encoding.count(&self.text) as u64,
                ..Usage::default()
            });
            self.usage_counted = true;
        }
        self.usage
    }
}

/// The encoder of the client's protocol (translating relays only).
#[derive(Debug, Clone)]
pub(crate) enum Encoder {
    Chat(ChatEncoder),
    Messages(MessagesEncoder),
    Responses(ResponsesEncoder),
}

impl Encoder {
    /// The encoder for `target`.
    pub(crate) fn new(target: Protocol) -> Self {
        match target {
            Protocol::OpenAiChat => Self::Chat(ChatEncoder::default()),
            Protocol::AnthropicMessages => Self::Messages(MessagesEncoder::default()),
            Protocol::OpenAiResponses => Self::Responses(ResponsesEncoder::default()),
        }
    }

    /// Writes one event.
    pub(crate) fn event(&mut self, config: &RelayConfig, event: &Event<'_>, out: &mut Vec<u8>) {
        match self {
            Self::Chat(encoder) => encoder.event(config, event, out),
            Self::Messages(encoder) => encoder.event(config, event, out),
            Self::Responses(encoder) => encoder.event(config, event, out),
        }
    }
}

/// What a passthrough does with the event just decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Pass its bytes on.
    Keep,
    /// Insert a usage chunk before it (it is `data: [DONE]` and the upstream sent no usage).
    InsertUsage,
}

/// The sink the decoder writes to: meter, then redaction (with a guard), then encoder (when
/// translating).
pub(crate) struct Stage<'s> {
    pub(crate) config: &'s RelayConfig,
    pub(crate) meter: &'s mut Meter,
    pub(crate) encoder: Option<&'s mut Encoder>,
    pub(crate) redact: Option<&'s mut Redact>,
    pub(crate) out: &'s mut Vec<u8>,
    pub(crate) action: Action,
}

impl Stage<'_> {
    /// Hands `event` to the encoder, through the redaction stage if there is one (which, for
    /// `Done` and `Error`, only flushes the held text).
    fn forward(&mut self, event: &Event<'_>) {
        let Some(encoder) = self.encoder.as_deref_mut() else {
            return;
        };
        let (config, out) = (self.config, &mut *self.out);
        match self.redact.as_deref_mut() {
            Some(redact) => redact.event(event, &mut |e| encoder.event(config, e, out)),
            None if !matches!(event, Event::Done | Event::Error(_)) => {
                encoder.event(config, event, out);
            }
            None => {}
        }
    }

    /// Whether the client's stream must carry usage.
    fn usage_needed(&self) -> bool {
        match self.config.target {
            Protocol::OpenAiChat => self.config.include_usage,
            Protocol::AnthropicMessages | Protocol::OpenAiResponses => self.encoder.is_some(),
        }
    }

    fn end(&mut self) {
        self.meter.done = true;
        let needed = self.usage_needed();
        let usage = self.meter.final_usage(self.config, needed);
        let config = self.config;
        match self.encoder.as_deref_mut() {
            Some(Encoder::Chat(encoder)) => encoder.end(config, usage.as_ref(), self.out),
            Some(Encoder::Messages(encoder)) => {
                encoder.end(config, &usage.unwrap_or_default(), self.out);
            }
            Some(Encoder::Responses(encoder)) => {
                encoder.end(config, &usage.unwrap_or_default(), self.out);
            }
            None if needed && self.meter.usage_counted => self.action = Action::InsertUsage,
            None => {}
        }
    }
}

impl Sink for Stage<'_> {
    fn emit(&mut self, event: Event<'_>) {
        if self.meter.done {
            return;
        }
        let meter = &mut *self.meter;
        match event {
            Event::Start { model } => {
                if meter.model.is_none() && !model.is_empty() {
                    meter.model = Some(model.to_owned());
                }
                if meter.started {
                    return;
                }
                meter.started = true;
            }
            Event::Text(text) | Event::Reasoning(text) | Event::Refusal(text) => {
                meter.text.push_str(text);
            }
            Event::ToolStart { name, .. } => meter.text.push_str(name),
            Event::ToolArgs { fragment, .. } => meter.text.push_str(fragment),
            Event::Finish(_) => {}
            Event::Usage(usage) => {
                meter.usage = Some(usage);
                return;
            }
            Event::Done => {
                self.forward(&event);
                self.end();
                return;
            }
            Event::Error(error) => {
                meter.error = Some(error.raw.to_owned());
                meter.done = true;
                self.forward(&event);
                match self.encoder.as_deref_mut() {
                    Some(Encoder::Chat(_)) => ChatEncoder::upstream_error(&error, self.out),
                    Some(Encoder::Messages(_)) => MessagesEncoder::upstream_error(&error, self.out),
                    Some(Encoder::Responses(encoder)) => encoder.upstream_error(&error, self.out),
                    None => {}
                }
                return;
            }
        }
        self.forward(&event);
    }
}
