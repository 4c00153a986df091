//! Decoder of Anthropic Messages streams (`message_start`, `content_block_*`, `message_delta`,
//! `message_stop`, `ping`, `error`), keyed on each event's `data.type`.
//!
//! Text and thinking deltas become [`Event::Text`] and [`Event::Reasoning`]; a `tool_use` block
//! becomes a tool call numbered from 0 (a block closed without argument deltas gets `"{}"`),
//! except the JSON-mode tool (`json_tool`), whose arguments are the answer's text. Usage is the
//! `message_start` usage updated by each `message_delta`'s; its reasoning tokens are
//! `output_tokens_details.thinking_tokens`. Text, thinking and argument deltas,
//! nearly all of a stream, take the [`super::fast`] path.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::events::{Event, FinishReason, Sink, UpstreamError, Usage};
use super::fast::{self, DeltaKind};
use super::Outcome;

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: usize,
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    #[serde(borrow, default)]
    content_block: Option<ContentBlock<'a>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct ContentBlock<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
}

/// A content block delta or a message delta: their fields do not clash.
#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct RawUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    thinking_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// What a content block (by its stream index) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    Tool { call: usize, has_args: bool },
    Json { has_args: bool },
    Other,
}

/// The usage counters as Anthropic reports them.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
    thinking: u64,
}

impl Counters {
    fn update(&mut self, raw: &RawUsage) {
        self.input = raw.input_tokens.unwrap_or(self.input);
        self.output = raw.output_tokens.unwrap_or(self.output);
        self.cache_read = raw.cache_read_input_tokens.unwrap_or(self.cache_read);
        self.cache_creation = raw
            .cache_creation_input_tokens
            .unwrap_or(self.cache_creation);
        let thinking = raw.output_tokens_details.as_ref();
        self.thinking = thinking
            .and_then(|details| details.thinking_tokens)
            .unwrap_or(self.thinking);
    }

    fn usage(self) -> Usage {
        Usage {
            prompt_tokens: self.input + self.cache_read + self.cache_creation,
            completion_tokens: self.output,
            cached_tokens: self.cache_read,
            reasoning_tokens: self.thinking,
            cache_creation_tokens: self.cache_creation,
        }
    }
}

/// Decodes one Anthropic Messages stream. One per stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct AnthropicDecoder {
    /// The name of the JSON-mode tool, if the request used one.
    json_tool: Option<String>,
    blocks: Vec<BlockKind>,
    calls: usize,
    counters: Counters,
    /// The fast path's buffer for unescaped strings.
    scratch: String,
}

impl AnthropicDecoder {
    /// A decoder treating the tool named `json_tool` as the JSON-mode answer.
    pub(crate) fn new(json_tool: Option<String>) -> Self {
        Self {
            json_tool,
            ..Self::default()
        }
    }

    /// Decodes the data of one SSE event.
    pub(crate) fn decode(&mut self, data: &str, sink: &mut impl Sink) -> Outcome {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let fast = fast::anthropic_delta(data, &mut scratch);
        if let Some((index, kind, text)) = fast {
            self.block_delta(index, kind, Some(text.get(data, &scratch)), sink);
        }
        self.scratch = scratch;
        if fast.is_some() {
            return Outcome::Kept;
        }
        self.decode_serde(data, sink)
    }

    /// The general path: any event, read with `serde_json`.
    fn decode_serde(&mut self, data: &str, sink: &mut impl Sink) -> Outcome {
        let Ok(event) = serde_json::from_str::<Data<'_>>(data) else {
            return Outcome::Malformed;
        };
        match &*event.kind {
            "message_start" => {
                let message = event.message.as_ref();
                if let Some(usage) = message.and_then(|m| m.usage.as_ref()) {
                    self.counters.update(usage);
                }
                sink.emit(Event::Start {
                    model: message.and_then(|m| m.model.as_deref()).unwrap_or(""),
                });
                if message.is_some_and(|m| m.usage.is_some()) {
                    sink.emit(Event::Usage(self.counters.usage()));
                }
            }
            "content_block_start" => match &event.content_block {
                Some(block) => self.block_start(event.index, block, sink),
                None => return Outcome::Malformed,
            },
            "content_block_delta" => match &event.delta {
                Some(delta) => {
                    let (kind, text) = match delta.kind.as_deref() {
                        Some("text_delta") => (DeltaKind::Text, &delta.text),
                        Some("thinking_delta") => (DeltaKind::Thinking, &delta.thinking),
                        Some("input_json_delta") => (DeltaKind::InputJson, &delta.partial_json),
                        _ => return Outcome::Kept,
                    };
                    self.block_delta(event.index, kind, text.as_deref(), sink);
                }
                None => return Outcome::Malformed,
            },
            "content_block_stop" => self.block_stop(event.index, sink),
            "message_delta" => self.message_delta(&event, sink),
            "message_stop" => sink.emit(Event::Done),
            "error" => emit_error(event.error, sink),
            _ => {}
        }
        Outcome::Kept
    }

    fn block_start(&mut self, index: usize, block: &ContentBlock<'_>, sink: &mut impl Sink) {
        let kind = match &*block.kind {
            "text" => {
                emit_text(block.text.as_deref(), Event::Text, sink);
                BlockKind::Text
            }
            "thinking" => {
                emit_text(block.thinking.as_deref(), Event::Reasoning, sink);
                BlockKind::Thinking
            }
            "tool_use" => {
                let name = block.name.as_deref().unwrap_or("");
                let input = block.input.map(RawValue::get).filter(|raw| *raw != "{}");
                if self.json_tool.as_deref() == Some(name) {
                    emit_text(input, Event::Text, sink);
                    BlockKind::Json {
                        has_args: input.is_some(),
                    }
                } else {
                    let call = self.calls;
                    self.calls += 1;
                    sink.emit(Event::ToolStart {
                        call,
                        id: block.id.as_deref().unwrap_or(""),
                        name,
                    });
                    if let Some(fragment) = input {
                        sink.emit(Event::ToolArgs { call, fragment });
                    }
                    BlockKind::Tool {
                        call,
                        has_args: input.is_some(),
                    }
                }
            }
            _ => BlockKind::Other,
        };
        if self.blocks.len() <= index {
            self.blocks.resize(index + 1, BlockKind::Other);
        }
        self.blocks[index] = kind;
    }

    fn block_delta(
        &mut self,
        index: usize,
        delta: DeltaKind,
        text: Option<&str>,
        sink: &mut impl Sink,
    ) {
        let Some(kind) = self.blocks.get_mut(index) else {
            return;
        };
        let text = text.filter(|t| !t.is_empty());
        match (delta, kind) {
            (DeltaKind::Text, _) => emit_text(text, Event::Text, sink),
            (DeltaKind::Thinking, _) => emit_text(text, Event::Reasoning, sink),
            (DeltaKind::InputJson, BlockKind::Tool { call, has_args }) => {
                if let Some(fragment) = text {
                    *has_args = true;
                    sink.emit(Event::ToolArgs {
                        call: *call,
                        fragment,
                    });
                }
            }
            (DeltaKind::InputJson, BlockKind::Json { has_args }) => {
                if let Some(text) = text {
                    *has_args = true;
                    sink.emit(Event::Text(text));
                }
            }
            _ => {}
        }
    }

    fn block_stop(&mut self, index: usize, sink: &mut impl Sink) {
        match self.blocks.get(index) {
            Some(BlockKind::Tool {
                call,
                has_args: false,
            }) => sink.emit(Event::ToolArgs {
                call: *call,
                fragment: "{}",
            }),
            Some(BlockKind::Json { has_args: false }) => sink.emit(Event::Text("{}")),
            _ => {}
        }
    }

    fn message_delta(&mut self, event: &Data<'_>, sink: &mut impl Sink) {
        let stop_reason = event.delta.as_ref().and_then(|d| d.stop_reason.as_deref());
        if let Some(reason) = stop_reason {
            let json_answer = self
                .blocks
                .iter()
                .any(|kind| matches!(kind, BlockKind::Json { .. }));
            let reason = match FinishReason::from_anthropic(reason) {
                FinishReason::ToolCalls if json_answer && self.calls == 0 => FinishReason::Stop,
                reason => reason,
            };
            sink.emit(Event::Finish(reason));
        }
        if let Some(usage) = &event.usage {
            self.counters.update(usage);
            sink.emit(Event::Usage(self.counters.usage()));
        }
    }
}

/// Emits `text` as `event` unless it is absent or empty.
fn emit_text<'t>(text: Option<&'t str>, event: fn(&'t str) -> Event<'t>, sink: &mut impl Sink) {
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        sink.emit(event(text));
    }
}

/// Emits an upstream `error` event's `error` object.
fn emit_error(raw: Option<&RawValue>, sink: &mut impl Sink) {
    let raw = raw.map_or("{}", RawValue::get);
    let body = serde_json::from_str::<ErrorBody<'_>>(raw).ok();
    let kind = body
        .as_ref()
        .and_then(|b| b.kind.as_deref())
        .unwrap_or("api_error");
    sink.emit(Event::Error(UpstreamError {
        raw,
        message: body
            .as_ref()
            .and_then(|b| b.message.as_deref())
            .unwrap_or(""),
        kind,
        code: Some(kind),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record(Vec<String>);

    impl Sink for Record {
        fn emit(&mut self, event: Event<'_>) {
            self.0.push(format!("{event:?}"));
        }
    }

    #[test]
    fn the_fast_path_reads_deltas_as_serde_does() {
        let start = concat!(
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            "\n",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
        );
        for data in [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\n\"\u00e9"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":7,"delta":{"type":"text_delta","text":"no block"}}"#,
            r#"{ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "spaced" } }"#,
        ] {
            let (mut fast, mut slow) = (Record::default(), Record::default());
            let (mut fast_decoder, mut slow_decoder) =
                (AnthropicDecoder::default(), AnthropicDecoder::default());
            for line in start.lines() {
                fast_decoder.decode(line, &mut Record::default());
                slow_decoder.decode(line, &mut Record::default());
            }
            let mut scratch = String::new();
            assert!(
                fast::anthropic_delta(data, &mut scratch).is_some(),
                "{data}"
            );
            assert_eq!(
                fast_decoder.decode(data, &mut fast),
                slow_decoder.decode_serde(data, &mut slow)
            );
            assert_eq!(fast.0, slow.0, "{data}");
        }
    }
}
