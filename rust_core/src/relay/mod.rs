//! The *respond* phase's stream relay: one object per stream that, in one call per upstream
//! chunk, parses the SSE, meters usage, translates between client protocols and strips or
//! inserts the usage chunk.
//!
//! Built as decoder -> normalised [`events::Event`]s -> [`stage`] (metering) -> encoder:
//! - decoders: [`decode_openai`] (chat completions), [`decode_anthropic`] (Messages),
//!   [`decode_responses`] (Responses, metered passthrough only);
//! - encoders: [`encode_openai`], [`encode_anthropic`], [`encode_responses`] (with
//!   [`responses_output`], the Responses output items and response object);
//! - when source and target are the same protocol, the [`passthrough`] path sends the upstream's
//!   bytes on unchanged (the same buffer when a chunk is exactly whole events) and the decoder
//!   only meters;
//! - a relay built with a guard [`Policy`] ([`StreamRelay::with_guard`]) always translates (also
//!   between the same protocols), and the [`redact`] stage between the meter and the encoder masks
//!   answer text, reasoning, refusals and tool call arguments as they stream; a Responses stream,
//!   which has no translating decoder, is masked in place instead ([`redact_responses`]).
//!
//! Every translation is incremental (nothing is held beyond the current event, except what the
//! target protocol repeats at its end) and gives the same output under any split of the input.
//!
//! ```
//! use _core::relay::{Protocol, RelayConfig, StreamRelay};
//! let mut config = RelayConfig::new(Protocol::AnthropicMessages, Protocol::OpenAiChat);
//! config.request_id = "r1".to_owned();
//! let mut relay = StreamRelay::new(config)?;
//! let out = relay.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude\"}}\n\n")?;
//! assert!(out.bytes().unwrap_or_default().starts_with(b"data: {\"id\":\"chatcmpl-r1\""));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decode_anthropic;
mod decode_openai;
mod decode_responses;
mod encode_anthropic;
mod encode_openai;
mod encode_responses;
pub mod events;
mod fast;
mod json;
mod passthrough;
mod redact;
mod redact_responses;
mod responses_output;
mod stage;

use std::fmt;

use decode_anthropic::AnthropicDecoder;
use decode_openai::OpenAiDecoder;
use decode_responses::ResponsesDecoder;
use encode_anthropic::MessagesEncoder;
use encode_openai::ChatEncoder;
use encode_responses::ResponsesEncoder;
pub use events::Usage;
use passthrough::Held;
use redact::Redact;
use redact_responses::ResponsesRedact;
use stage::{Action, Encoder, Meter, Stage};

use crate::error::{RelayError, SseError};
use crate::scan::{Category, Policy};
use crate::sse::{SseParser, DEFAULT_MAX_EVENT_BYTES};
use crate::tokens::Encoding;

/// A streaming protocol, as a client speaks it or an upstream answers in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI chat completions (`openai.chat`).
    OpenAiChat,
    /// Anthropic Messages (`anthropic.messages`).
    AnthropicMessages,
    /// OpenAI Responses (`openai.responses`).
    OpenAiResponses,
}

impl Protocol {
    /// The protocol named `name` (`openai.chat`, `anthropic.messages`, `openai.responses`).
    pub fn from_name(name: &str) -> Result<Self, RelayError> {
        match name {
            "openai.chat" => Ok(Self::OpenAiChat),
            "anthropic.messages" => Ok(Self::AnthropicMessages),
            "openai.responses" => Ok(Self::OpenAiResponses),
            _ => Err(RelayError::UnknownProtocol(name.to_owned())),
        }
    }

    /// The protocol's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAiChat => "openai.chat",
            Self::AnthropicMessages => "anthropic.messages",
            Self::OpenAiResponses => "openai.responses",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one relay is set up: given once, at construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// The upstream's protocol.
    pub source: Protocol,
    /// The client's protocol.
    pub target: Protocol,
    /// The encoding completion tokens are counted with when usage must be synthesized.
    pub encoding: Encoding,
    /// The OpenAI chat client asked for usage (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The gateway's request id, in the ids of translated streams (`chatcmpl-<id>`, ...).
    pub request_id: String,
    /// The model named when the upstream names none.
    pub model: String,
    /// `created` / `created_at` of translated streams (Unix seconds).
    pub created: u64,
    /// The caller's count of prompt tokens, for synthesized usage and Anthropic's
    /// `message_start`.
    pub prompt_tokens: u64,
    /// The tool an Anthropic upstream answers JSON mode with: its arguments are the answer.
    pub json_tool: Option<String>,
    /// The bound on one SSE event.
    pub max_event_bytes: usize,
}

impl RelayConfig {
    /// A configuration from `source` to `target` with the defaults (o200k_base, no usage for
    /// the client, empty ids, 1 MiB events).
    pub fn new(source: Protocol, target: Protocol) -> Self {
        Self {
            source,
            target,
            encoding: Encoding::O200kBase,
            include_usage: false,
            request_id: String::new(),
            model: String::new(),
            created: 0,
            prompt_tokens: 0,
            json_tool: None,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// What [`StreamRelay::feed`] has for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed<'a> {
    /// Exactly the chunk fed (passthrough of whole events): send it as it is.
    Unchanged,
    /// These bytes (possibly none).
    Bytes(&'a [u8]),
}

impl<'a> Relayed<'a> {
    /// The bytes to send, `None` for [`Relayed::Unchanged`].
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Self::Unchanged => None,
            Self::Bytes(bytes) => Some(bytes),
        }
    }
}

/// What a decoder made of one SSE event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Read (or ignored as irrelevant).
    Kept,
    /// An OpenAI usage-only chunk (`"choices": []` with a usage).
    UsageOnly,
    /// Not an event of the protocol (not JSON, or not the expected shape).
    Malformed,
}

/// The decoder of the source protocol.
#[derive(Debug, Clone)]
enum Decoder {
    OpenAi(OpenAiDecoder),
    Anthropic(AnthropicDecoder),
    Responses(ResponsesDecoder),
}

impl Decoder {
    fn decode(&mut self, data: &str, stage: &mut Stage<'_>) -> Outcome {
        let outcome = match self {
            Self::OpenAi(decoder) => decoder.decode(data, stage),
            Self::Anthropic(decoder) => decoder.decode(data, stage),
            Self::Responses(decoder) => decoder.decode(data, stage),
        };
        if outcome == Outcome::Malformed {
            stage.meter.malformed += 1;
        }
        outcome
    }
}

/// Findings of a guarded relay's redaction, for one rule ([`StreamRelay::guard_findings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardCount {
    /// The rule's id.
    pub rule: String,
    /// The rule's category.
    pub category: Category,
    /// The rule's action byte in the guard policy (1 log, 2 redact, 3 block: masked like redact).
    pub action: u8,
    /// How many findings (masked or logged) the stream had.
    pub count: u64,
}

/// Relays one upstream stream to the client. One per response.
#[derive(Debug)]
pub struct StreamRelay {
    config: RelayConfig,
    parser: SseParser,
    decoder: Decoder,
    /// `None` for a passthrough.
    encoder: Option<Encoder>,
    /// The redaction stage of a guarded translating relay.
    redact: Option<Redact>,
    /// The in-place redaction of a guarded Responses relay.
    responses: Option<ResponsesRedact>,
    meter: Meter,
    held: Held,
    out: Vec<u8>,
}

impl StreamRelay {
    /// A relay for `config`; an error for a pair it cannot translate (an OpenAI Responses
    /// upstream can only be passed through).
    pub fn new(config: RelayConfig) -> Result<Self, RelayError> {
        Self::build(config, None)
    }

    /// A relay for `config` whose answer text, reasoning, refusals and tool call arguments are
    /// masked with `guard` as they stream (redact and block rules mask, log rules count; see
    /// [`Self::guard_findings`]). It always decodes and encodes, also between the same protocols
    /// (an OpenAI chat stream then keeps only choice 0), except a Responses stream, masked in
    /// place. A policy with every rule off makes a relay like [`Self::new`]'s. An error for a
    /// pair it cannot translate (as [`Self::new`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use _core::relay::{Protocol, RelayConfig, StreamRelay};
    /// use _core::scan::{Category, Policy, RuleDef, Scanner};
    /// let mut rule = RuleDef::new("demo-token", Category::Secret, r"\bdemo_[a-z0-9]{8}\b");
    /// rule.keywords = vec!["demo_".to_owned()];
    /// let policy = Policy::new(Arc::new(Scanner::new(vec![rule])?), vec![2])?;
    /// let config = RelayConfig::new(Protocol::OpenAiChat, Protocol::OpenAiChat);
    /// let mut relay = StreamRelay::with_guard(config, policy)?;
    /// let mut out = Vec::new();
    /// for part in ["key demo_a1b2", "c3d4 ok"] {
    ///     let chunk = format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{part}\"}}}}]}}\n\n");
    ///     out.extend_from_slice(relay.feed(chunk.as_bytes())?.bytes().unwrap_or_default());
    /// }
    /// out.extend_from_slice(relay.feed(b"data: [DONE]\n\n")?.bytes().unwrap_or_default());
    /// let out = String::from_utf8(out)?;
    /// assert!(out.contains("[REDACTED:demo-token]") && !out.contains("a1b2"));
    /// assert_eq!(relay.guard_findings()[0].count, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_guard(config: RelayConfig, guard: Policy) -> Result<Self, RelayError> {
        Self::build(config, Some(guard).filter(Policy::active))
    }

    fn build(config: RelayConfig, guard: Option<Policy>) -> Result<Self, RelayError> {
        let (source, target) = (config.source, config.target);
        if source == Protocol::OpenAiResponses && target != source {
            return Err(RelayError::UnsupportedPair {
                from: source.name(),
                to: target.name(),
            });
        }
        let (guard, responses) = match guard {
            Some(policy) if source == Protocol::OpenAiResponses => {
                (None, Some(ResponsesRedact::new(policy)))
            }
            guard => (guard, None),
        };
        let passthrough = source == target && guard.is_none();
        let decoder = match source {
            Protocol::OpenAiChat => Decoder::OpenAi(OpenAiDecoder::new(passthrough)),
            Protocol::AnthropicMessages => {
                Decoder::Anthropic(AnthropicDecoder::new(config.json_tool.clone()))
            }
            Protocol::OpenAiResponses => Decoder::Responses(ResponsesDecoder::default()),
        };
        Ok(Self {
            parser: SseParser::new(config.max_event_bytes),
            decoder,
            encoder: (!passthrough && responses.is_none()).then(|| Encoder::new(target)),
            redact: guard.map(Redact::new),
            responses,
            meter: Meter::default(),
            held: Held::default(),
            out: Vec::new(),
            config,
        })
    }

    /// The relay's configuration.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Feeds the next upstream chunk; returns what to send the client now: only whole events
    /// (an incomplete trailing event is held until it completes).
    ///
    /// Errors when an event breaks the size bound; events completed before it are returned
    /// first and the error comes with the next call (it is sticky).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Relayed<'_>, SseError> {
        self.out.clear();
        if self.encoder.is_some() || self.responses.is_some() {
            self.translate(chunk).map(Relayed::Bytes)
        } else {
            self.pass(chunk)
        }
    }

    /// The upstream ended: an unterminated last event is still processed. Returns what is left
    /// to send; no terminal event is invented when the upstream broke off.
    pub fn finish(&mut self) -> Result<&[u8], SseError> {
        self.out.clear();
        let result = if self.encoder.is_some() || self.responses.is_some() {
            let Self {
                config,
                parser,
                decoder,
                encoder,
                redact,
                responses,
                meter,
                out,
                ..
            } = self;
            let result = parser.finish_with(|event| {
                let mut stage = Stage {
                    config,
                    meter: &mut *meter,
                    encoder: encoder.as_mut(),
                    redact: redact.as_mut(),
                    out: &mut *out,
                    action: Action::Keep,
                };
                decoder.decode(&event.data, &mut stage);
                if let Some(responses) = responses.as_mut() {
                    responses.event(event.event, &event.data, out);
                }
            });
            self.flush_held();
            result
        } else {
            // Terminate the held event so it reaches the client whole (held line ends only: the
            // LF of a CRLF split from its CR, sent as it is).
            let ended = if self.held.bytes.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                let skip =
                    usize::from(self.held.lf_pending && self.held.bytes.first() == Some(&b'\n'));
                self.out.extend_from_slice(&self.held.bytes[skip..]);
                self.held.bytes.clear();
                Ok(())
            } else {
                match self.pass(b"\n\n") {
                    Ok(Relayed::Unchanged) => {
                        self.out.extend_from_slice(b"\n\n");
                        Ok(())
                    }
                    Ok(Relayed::Bytes(_)) => Ok(()),
                    Err(error) => Err(error),
                }
            };
            ended.and(self.parser.finish_with(|_| {}))
        };
        deliver(result, &self.out)
    }

    /// An error event in the client's protocol (the caller's, e.g. when the upstream broke
    /// off); it ends the stream.
    pub fn error_event(&mut self, message: &str, kind: &str, code: Option<&str>) -> &[u8] {
        self.out.clear();
        self.flush_held();
        self.meter.done = true;
        match self.config.target {
            Protocol::OpenAiChat => ChatEncoder::error(&mut self.out, message, kind, code),
            Protocol::AnthropicMessages => MessagesEncoder::error(&mut self.out, message, kind),
            Protocol::OpenAiResponses => {
                let sequence = match (&mut self.encoder, &mut self.decoder) {
                    (Some(Encoder::Responses(encoder)), _) => encoder.next_sequence(),
                    (_, Decoder::Responses(decoder)) => decoder.take_sequence(),
                    _ => 0,
                };
                ResponsesEncoder::error(&mut self.out, sequence, message, kind, code);
            }
        }
        &self.out
    }

    /// Whether the source's terminal event (or an error) was seen.
    pub fn done(&self) -> bool {
        self.meter.done
    }

    /// The usage as the upstream reported it, or as the relay counted it (see
    /// [`Self::usage_counted`]).
    pub fn usage(&self) -> Option<Usage> {
        self.meter.usage
    }

    /// Whether the relay synthesized the usage: the client's stream had to carry usage and the
    /// upstream sent none by its terminal event.
    pub fn usage_counted(&self) -> bool {
        self.meter.usage_counted
    }

    /// The upstream's response model, if it named one.
    pub fn model(&self) -> Option<&str> {
        self.meter.model.as_deref()
    }

    /// The raw JSON of an upstream error object, if one was sent.
    pub fn error(&self) -> Option<&str> {
        self.meter.error.as_deref()
    }

    /// The completion text: answer and reasoning text, tool call names and arguments.
    pub fn completion_text(&self) -> &str {
        &self.meter.text
    }

    /// Whether any content reached the stream yet: answer, reasoning or refusal text, or a tool
    /// call. Until then the stream holds nothing the client could not be given again by another
    /// deployment: the route phase may still fail it over (docs/routing.md).
    pub fn content_started(&self) -> bool {
        !self.meter.text.is_empty()
    }

    /// Counts the tokens of [`Self::completion_text`] with the configured encoding.
    pub fn count_completion_tokens(&self) -> usize {
        self.config.encoding.count(&self.meter.text)
    }

    /// How many data events the source decoder could not read.
    pub fn malformed_events(&self) -> u64 {
        self.meter.malformed
    }

    /// Whether the relay redacts with a guard policy.
    pub fn guarded(&self) -> bool {
        self.redact.is_some() || self.responses.is_some()
    }

    /// A guarded relay's findings so far, per rule with any (in rule order): masked ones (redact
    /// and block rules) and logged ones. Empty without a guard.
    pub fn guard_findings(&self) -> Vec<GuardCount> {
        let (policy, counts) = match (&self.redact, &self.responses) {
            (Some(redact), _) => (redact.policy(), redact.counts()),
            (None, Some(responses)) => (responses.policy(), responses.counts()),
            (None, None) => return Vec::new(),
        };
        let scanner = policy.scanner();
        counts
            .into_iter()
            .enumerate()
            .filter(|&(_, count)| count > 0)
            .map(|(rule, count)| GuardCount {
                rule: scanner.rule_id(rule).to_owned(),
                category: scanner.category(rule),
                action: policy.action(rule),
                count,
            })
            .collect()
    }

    /// A guarded relay whose stream ended without its terminal event (it broke off, or the
    /// caller ends it with an error): the text its redactors hold goes to the client, redacted.
    fn flush_held(&mut self) {
        if let Some(responses) = self.responses.as_mut() {
            responses.flush(&mut self.out);
        }
        if self.meter.done {
            return;
        }
        if let (Some(redact), Some(encoder)) = (self.redact.as_mut(), self.encoder.as_mut()) {
            let (config, out) = (&self.config, &mut self.out);
            redact.flush(&mut |event| encoder.event(config, event, out));
        }
    }

    /// Decodes, meters and encodes (or, for a guarded Responses relay, masks in place) the
    /// events of `chunk`.
    fn translate(&mut self, chunk: &[u8]) -> Result<&[u8], SseError> {
        let Self {
            config,
            parser,
            decoder,
            encoder,
            redact,
            responses,
            meter,
            out,
            ..
        } = self;
        let result = parser.feed_blocks(chunk, |block| {
            if let Some(event) = block.event {
                let mut stage = Stage {
                    config,
                    meter: &mut *meter,
                    encoder: encoder.as_mut(),
                    redact: redact.as_mut(),
                    out: &mut *out,
                    action: Action::Keep,
                };
                decoder.decode(&event.data, &mut stage);
                if let Some(responses) = responses.as_mut() {
                    responses.event(event.event, &event.data, out);
                }
            }
        });
        deliver(result, &self.out)
    }
}

/// The bytes to send, or the error when there are none (else it comes with the next call).
fn deliver(result: Result<(), SseError>, out: &[u8]) -> Result<&[u8], SseError> {
    match result {
        Err(error) if out.is_empty() => Err(error),
        _ => Ok(out),
    }
}
