//! One streaming `serde_json` pass over an OpenAI `chat.completion.chunk` object, for
//! [`super::ChatStreamMeter`].
//!
//! A `DeserializeSeed` visitor reads only `model`, `usage`, `error` and the text of
//! `choices[*].delta` (`content`, `reasoning_content`, `tool_calls[*].function.{name,arguments}`),
//! appending text straight from serde's unescape buffer into the meter's buffer: no DOM, no
//! `Value`, no allocation per chunk. Everything else is skipped with `IgnoredAny`.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::chat_meter::Usage;

/// Where the fields read from one chunk go: the meter's state.
pub(super) struct ChunkTarget<'s> {
    /// Replaced by a non-null `usage`.
    pub usage: &'s mut Option<Usage>,
    /// Set from the first non-empty `model`.
    pub model: &'s mut Option<String>,
    /// Replaced by a non-null `error` (raw JSON).
    pub error: &'s mut Option<String>,
    /// Appended with the delta text.
    pub text: &'s mut String,
}

/// Reads one chunk (`data` of one SSE event) into `target`. On an error, fields read before it
/// have been applied.
pub(super) fn read_chunk(data: &str, target: ChunkTarget<'_>) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(data);
    ChunkSeed(target).deserialize(&mut deserializer)?;
    deserializer.end()
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ChunkKey {
    Model,
    Usage,
    Error,
    Choices,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ChoiceKey {
    Delta,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum DeltaKey {
    Content,
    ReasoningContent,
    ToolCalls,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ToolCallKey {
    Function,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum FunctionKey {
    Name,
    Arguments,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct RawUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
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
        }
    }
}

/// Visits one chunk object, updating the target in place.
struct ChunkSeed<'s>(ChunkTarget<'s>);

impl<'de> DeserializeSeed<'de> for ChunkSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ChunkSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a chat.completion.chunk object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        while let Some(key) = map.next_key::<ChunkKey>()? {
            match key {
                ChunkKey::Model if state.model.is_none() => {
                    *state.model = map
                        .next_value::<Option<String>>()?
                        .filter(|model| !model.is_empty());
                }
                ChunkKey::Usage => {
                    if let Some(usage) = map.next_value::<Option<RawUsage>>()? {
                        *state.usage = Some(usage.into());
                    }
                }
                ChunkKey::Error => {
                    if let Some(error) = map.next_value::<Option<&RawValue>>()? {
                        *state.error = Some(error.get().to_owned());
                    }
                }
                ChunkKey::Choices => {
                    map.next_value_seed(Each(&mut *state.text, ChoiceElement))?;
                }
                ChunkKey::Model | ChunkKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Visits a JSON array (or null), running the [`ElementFn`] on each item with the text buffer.
struct Each<'s, F>(&'s mut String, F);

/// Visits a JSON object (or null), running the [`EntryFn`] on each entry with the text buffer.
struct Object<'s, F>(&'s mut String, F);

/// Appends a JSON string to the text buffer (null is ignored).
struct AppendText<'s>(&'s mut String);

/// Reads the next element of a JSON array with the text buffer; `false` at the end.
trait ElementFn: Copy {
    fn next<'de, A: SeqAccess<'de>>(self, text: &mut String, seq: &mut A)
        -> Result<bool, A::Error>;
}

/// Reads the next entry of a JSON object with the text buffer; `false` at the end.
trait EntryFn: Copy {
    fn next<'de, A: MapAccess<'de>>(self, text: &mut String, map: &mut A)
        -> Result<bool, A::Error>;
}

impl<'de, F: ElementFn> DeserializeSeed<'de> for Each<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, F: ElementFn> Visitor<'de> for Each<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array or null")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while self.1.next(self.0, &mut seq)? {}
        Ok(())
    }
}

impl<'de, F: EntryFn> DeserializeSeed<'de> for Object<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, F: EntryFn> Visitor<'de> for Object<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while self.1.next(self.0, &mut map)? {}
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for AppendText<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AppendText<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, value: &str) -> Result<(), E> {
        self.0.push_str(value);
        Ok(())
    }
}

/// Reads the value of the current key with `seed`, or skips it when `seed` is `None`.
fn value_or_skip<'de, A, S>(map: &mut A, seed: Option<S>) -> Result<bool, A::Error>
where
    A: MapAccess<'de>,
    S: DeserializeSeed<'de, Value = ()>,
{
    match seed {
        Some(seed) => map.next_value_seed(seed)?,
        None => {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(true)
}

/// `choices[*]`: objects whose `delta` is read.
#[derive(Clone, Copy)]
struct ChoiceElement;

impl ElementFn for ChoiceElement {
    fn next<'de, A: SeqAccess<'de>>(
        self,
        text: &mut String,
        seq: &mut A,
    ) -> Result<bool, A::Error> {
        Ok(seq.next_element_seed(Object(text, ChoiceEntry))?.is_some())
    }
}

#[derive(Clone, Copy)]
struct ChoiceEntry;

impl EntryFn for ChoiceEntry {
    fn next<'de, A: MapAccess<'de>>(
        self,
        text: &mut String,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match map.next_key::<ChoiceKey>()? {
            None => Ok(false),
            Some(ChoiceKey::Delta) => value_or_skip(map, Some(Object(text, DeltaEntry))),
            Some(ChoiceKey::Other) => value_or_skip(map, None::<AppendText<'_>>),
        }
    }
}

/// `choices[*].delta`: its text fields and tool calls.
#[derive(Clone, Copy)]
struct DeltaEntry;

impl EntryFn for DeltaEntry {
    fn next<'de, A: MapAccess<'de>>(
        self,
        text: &mut String,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match map.next_key::<DeltaKey>()? {
            None => Ok(false),
            Some(DeltaKey::Content | DeltaKey::ReasoningContent) => {
                value_or_skip(map, Some(AppendText(text)))
            }
            Some(DeltaKey::ToolCalls) => value_or_skip(map, Some(Each(text, ToolCallElement))),
            Some(DeltaKey::Other) => value_or_skip(map, None::<AppendText<'_>>),
        }
    }
}

/// `delta.tool_calls[*]`: objects whose `function` is read.
#[derive(Clone, Copy)]
struct ToolCallElement;

impl ElementFn for ToolCallElement {
    fn next<'de, A: SeqAccess<'de>>(
        self,
        text: &mut String,
        seq: &mut A,
    ) -> Result<bool, A::Error> {
        Ok(seq
            .next_element_seed(Object(text, ToolCallEntry))?
            .is_some())
    }
}

#[derive(Clone, Copy)]
struct ToolCallEntry;

impl EntryFn for ToolCallEntry {
    fn next<'de, A: MapAccess<'de>>(
        self,
        text: &mut String,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match map.next_key::<ToolCallKey>()? {
            None => Ok(false),
            Some(ToolCallKey::Function) => value_or_skip(map, Some(Object(text, FunctionEntry))),
            Some(ToolCallKey::Other) => value_or_skip(map, None::<AppendText<'_>>),
        }
    }
}

/// `tool_calls[*].function`: `name` and `arguments` text.
#[derive(Clone, Copy)]
struct FunctionEntry;

impl EntryFn for FunctionEntry {
    fn next<'de, A: MapAccess<'de>>(
        self,
        text: &mut String,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match map.next_key::<FunctionKey>()? {
            None => Ok(false),
            Some(FunctionKey::Name | FunctionKey::Arguments) => {
                value_or_skip(map, Some(AppendText(text)))
            }
            Some(FunctionKey::Other) => value_or_skip(map, None::<AppendText<'_>>),
        }
    }
}
