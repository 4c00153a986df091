//! Decoder of OpenAI chat-completions streams (`chat.completion.chunk` events).
//!
//! Each `data:` event is read in one `serde_json` pass into borrowed fields (text is copied only
//! when it holds escapes), then emitted as [`Event`]s in a fixed order: an `error` ends the
//! stream; otherwise `Start` (with the chunk's model), then per choice its reasoning, text,
//! refusal, tool calls and finish reason, then the usage. `data: [DONE]` is [`Event::Done`]. Chunks of text
//! only, nearly all of a stream, take the [`super::fast`] path.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::events::{Event, FinishReason, Sink, UpstreamError, Usage};
use super::fast::{self, Text, TextChunk};
use super::Outcome;

/// One chunk: only the fields the relay reads.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Choices<'a>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// `choices`, without a `Vec` for the usual single choice.
#[derive(Default)]
struct Choices<'a> {
    /// `choices` was an array with no element.
    empty: bool,
    first: Option<Choice<'a>>,
    rest: Vec<Choice<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(default)]
    index: usize,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<Function<'a>>,
}

#[derive(Deserialize)]
struct Function<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

/// An OpenAI `error` object (a bare string is its message).
#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Choices<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ChoicesVisitor(std::marker::PhantomData))
    }
}

struct ChoicesVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ChoicesVisitor<'a> {
    type Value = Choices<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of choices or null")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Choices::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let first = seq.next_element::<Choice<'a>>()?;
        let mut rest = Vec::new();
        while let Some(choice) = seq.next_element::<Choice<'a>>()? {
            rest.push(choice);
        }
        Ok(Choices {
            empty: first.is_none(),
            first,
            rest,
        })
    }
}

impl From<RawUsage> for Usage {
    fn from(raw: RawUsage) -> Self {
        Self {
            prompt_tokens: raw.prompt_tokens.unwrap_or(0),
            completion_tokens: raw.completion_tokens.unwrap_or(0),
            cached_tokens: raw
                .prompt_tokens_details
                .and_then(|details| details.cached_tokens)
                .unwrap_or(0),
            reasoning_tokens: raw
                .completion_tokens_details
                .and_then(|details| details.reasoning_tokens)
                .unwrap_or(0),
            cache_creation_tokens: 0,
        }
    }
}

/// Decodes one OpenAI chat stream. One per stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenAiDecoder {
    /// Emit every choice (passthrough metering), not only choice 0 (translation).
    all_choices: bool,
    /// The `(choice, tool call index)` pairs whose `ToolStart` was emitted.
    started_calls: Vec<(u32, usize)>,
    /// The fast path's buffer for unescaped strings.
    scratch: String,
}

impl OpenAiDecoder {
    /// A decoder emitting every choice (`all_choices`) or only choice 0.
    pub(crate) fn new(all_choices: bool) -> Self {
        Self {
            all_choices,
            ..Self::default()
        }
    }

    /// Decodes the data of one SSE event.
    pub(crate) fn decode(&mut self, data: &str, sink: &mut impl Sink) -> Outcome {
        let data = data.trim_ascii();
        if data == "[DONE]" {
            sink.emit(Event::Done);
            return Outcome::Kept;
        }
        if !data.starts_with('{') {
            return Outcome::Malformed;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let fast = fast::openai_text_chunk(data, &mut scratch);
        if let Some(chunk) = &fast {
            self.text_chunk(data, chunk, &scratch, sink);
        }
        self.scratch = scratch;
        if fast.is_some() {
            return Outcome::Kept;
        }
        self.decode_serde(data, sink)
    }

    /// The general path: any chunk, read with `serde_json`.
    fn decode_serde(&mut self, data: &str, sink: &mut impl Sink) -> Outcome {
        let Ok(chunk) = serde_json::from_str::<Chunk<'_>>(data) else {
            return Outcome::Malformed;
        };
        if let Some(raw) = chunk.error {
            emit_error(raw, sink);
            return Outcome::Kept;
        }
        sink.emit(Event::Start {
            model: chunk.model.as_deref().unwrap_or(""),
        });
        let choices = &chunk.choices;
        for choice in choices.first.iter().chain(&choices.rest) {
            if self.all_choices || choice.index == 0 {
                self.choice(choice, sink);
            }
        }
        match chunk.usage {
            Some(usage) => {
                sink.emit(Event::Usage(usage.into()));
                if choices.empty {
                    return Outcome::UsageOnly;
                }
                Outcome::Kept
            }
            None => Outcome::Kept,
        }
    }

    /// Emits a chunk read by the fast path, as [`Self::choice`] would.
    fn text_chunk(&self, data: &str, chunk: &TextChunk<'_>, scratch: &str, sink: &mut impl Sink) {
        sink.emit(Event::Start {
            model: chunk.model.map_or("", |model| model.get(data, scratch)),
        });
        if !self.all_choices && chunk.index != 0 {
            return;
        }
        let text =
            |text: Option<Text>| text.map(|t| t.get(data, scratch)).filter(|t| !t.is_empty());
        if let Some(text) = text(chunk.reasoning) {
            sink.emit(Event::Reasoning(text));
        }
        if let Some(text) = text(chunk.content) {
            sink.emit(Event::Text(text));
        }
        if let Some(reason) = chunk.finish {
            sink.emit(Event::Finish(FinishReason::from_openai(reason)));
        }
    }

    fn choice(&mut self, choice: &Choice<'_>, sink: &mut impl Sink) {
        if let Some(delta) = &choice.delta {
            if let Some(text) = delta.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
                sink.emit(Event::Reasoning(text));
            }
            if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                sink.emit(Event::Text(text));
            }
            if let Some(text) = delta.refusal.as_deref().filter(|t| !t.is_empty()) {
                sink.emit(Event::Refusal(text));
            }
            for call in delta.tool_calls.iter().flatten() {
                self.tool_call(choice.index, call, sink);
            }
        }
        if let Some(reason) = &choice.finish_reason {
            sink.emit(Event::Finish(FinishReason::from_openai(reason)));
        }
    }

    fn tool_call(&mut self, choice: u32, call: &ToolCall<'_>, sink: &mut impl Sink) {
        let name = call.function.as_ref().and_then(|f| f.name.as_deref());
        let key = (choice, call.index);
        if !self.started_calls.contains(&key) {
            self.started_calls.push(key);
            sink.emit(Event::ToolStart {
                call: call.index,
                id: call.id.as_deref().unwrap_or(""),
                name: name.unwrap_or(""),
            });
        }
        let arguments = call.function.as_ref().and_then(|f| f.arguments.as_deref());
        if let Some(fragment) = arguments.filter(|a| !a.is_empty()) {
            sink.emit(Event::ToolArgs {
                call: call.index,
                fragment,
            });
        }
    }
}

/// Emits an upstream `error` value (an object, or a bare message string).
fn emit_error(raw: &RawValue, sink: &mut impl Sink) {
    let text = raw.get();
    if let Ok(message) = serde_json::from_str::<Cow<'_, str>>(text) {
        sink.emit(Event::Error(UpstreamError {
            raw: text,
            message: &message,
            kind: "",
            code: None,
        }));
        return;
    }
    let body = serde_json::from_str::<ErrorBody<'_>>(text).ok();
    let code = body
        .as_ref()
        .and_then(|b| b.code)
        .map(|code| code_text(code.get()));
    sink.emit(Event::Error(UpstreamError {
        raw: text,
        message: body
            .as_ref()
            .and_then(|b| b.message.as_deref())
            .unwrap_or(""),
        kind: body.as_ref().and_then(|b| b.kind.as_deref()).unwrap_or(""),
        code: code.as_ref().and_then(|code| code.as_deref()),
    }));
}

/// An error `code` as text: a string's value, a number's digits, nothing for `null`.
fn code_text(raw: &str) -> Option<Cow<'_, str>> {
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str(raw).ok(),
        Some(b'n') | None => None,
        Some(_) => Some(Cow::Borrowed(raw)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records events as text, to compare the two paths.
    #[derive(Default)]
    struct Record(Vec<String>);

    impl Sink for Record {
        fn emit(&mut self, event: Event<'_>) {
            self.0.push(format!("{event:?}"));
        }
    }

    fn both(data: &str) -> (Vec<String>, Outcome, Vec<String>, Outcome) {
        let (mut fast, mut slow) = (Record::default(), Record::default());
        let fast_outcome = OpenAiDecoder::new(false).decode(data, &mut fast);
        let slow_outcome = OpenAiDecoder::new(false).decode_serde(data.trim_ascii(), &mut slow);
        (fast.0, fast_outcome, slow.0, slow_outcome)
    }

    #[test]
    fn the_fast_path_reads_chunks_as_serde_does() {
        let head = r#""id":"c","object":"chat.completion.chunk","created":17,"model":"gpt-\u00e9","system_fingerprint":null,"obfuscation":"x""#;
        let choices = [
            r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
            r#"{"index":0,"delta":{"content":"a\n\"b\" \ud83d\ude80"},"logprobs":null,"finish_reason":null}"#,
            r#"{"delta":{"reasoning_content":"think","content":null},"index":0}"#,
            r#"{"index":1,"delta":{"content":"other choice"}}"#,
            r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}"#,
            r#"{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}"#,
            r#"{"index":0,"delta":{"content":null,"refusal":null},"finish_reason":null}"#,
        ];
        for choice in choices {
            for data in [
                format!("{{{head},\"choices\":[{choice}],\"usage\":null}}"),
                format!("{{\"choices\":[{choice}],{head}}}"),
            ] {
                let mut scratch = String::new();
                assert!(
                    fast::openai_text_chunk(&data, &mut scratch).is_some(),
                    "{data}"
                );
                let (fast, fast_outcome, slow, slow_outcome) = both(&data);
                assert_eq!(fast, slow, "{data}");
                assert_eq!(fast_outcome, slow_outcome);
            }
        }
    }
}
