//! Tokens of an OpenAI chat-completions request's `messages`, for the *limit* phase's TPM
//! estimate.
//!
//! The overhead rule is OpenAI's, from the cookbook "How to count tokens with tiktoken" for
//! gpt-4o and gpt-4: every message costs 3 tokens plus the tokens of each of its string values
//! (`role`, `content`, `name`, `tool_call_id`), a `name` costs 1 more, and the reply is primed
//! with 3 tokens. Beyond the cookbook: content given as an array of parts counts the text of its
//! `type: "text"` parts (images and audio are not counted), and assistant `tool_calls` count their
//! function name and arguments. Tool definitions (`tools`) are not counted.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::Encoding;
use crate::error::TokenError;

/// Tokens every message costs beyond its values.
pub const TOKENS_PER_MESSAGE: usize = 3;
/// Tokens a `name` costs beyond its value.
pub const TOKENS_PER_NAME: usize = 1;
/// Tokens that prime the assistant's reply.
pub const REPLY_PRIMING_TOKENS: usize = 3;

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    messages: Vec<Message<'a>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Content<'a>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
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
struct Part<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// Message content: a string, an array of parts (only text parts are kept), or null.
#[derive(Default)]
struct Content<'a>(Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ContentVisitor(std::marker::PhantomData))
    }
}

struct ContentVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ContentVisitor<'a> {
    type Value = Content<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an array of content parts, or null")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Content::default())
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Content(vec![Cow::Borrowed(value)]))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Content(vec![Cow::Owned(value.to_owned())]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut texts = Vec::new();
        while let Some(part) = seq.next_element::<Part<'a>>()? {
            if part.kind.as_deref() == Some("text") {
                texts.extend(part.text);
            }
        }
        Ok(Content(texts))
    }
}

/// Counts the prompt tokens of an OpenAI chat request body (JSON bytes) in the encoding called
/// `encoding`, with OpenAI's per-message overhead (see the module docs).
///
/// Fails with [`TokenError::UnknownEncoding`], or [`TokenError::InvalidBody`] when the body is
/// not JSON or has no `messages` array of objects.
pub fn count_chat_prompt(body: &[u8], encoding: &str) -> Result<usize, TokenError> {
    let encoding = Encoding::from_name(encoding)?;
    let body: Body<'_> =
        serde_json::from_slice(body).map_err(|error| TokenError::InvalidBody(error.to_string()))?;
    let count =
        |text: &Option<Cow<'_, str>>| text.as_deref().map_or(0, |text| encoding.count(text));
    let mut total = REPLY_PRIMING_TOKENS;
    for message in &body.messages {
        total += TOKENS_PER_MESSAGE + count(&message.role) + count(&message.tool_call_id);
        total += message
            .content
            .0
            .iter()
            .map(|text| encoding.count(text))
            .sum::<usize>();
        if message.name.is_some() {
            total += TOKENS_PER_NAME + count(&message.name);
        }
        for call in message.tool_calls.iter().flatten() {
            if let Some(function) = &call.function {
                total += count(&function.name) + count(&function.arguments);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(body: &str) -> Result<usize, TokenError> {
        count_chat_prompt(body.as_bytes(), "o200k_base")
    }

    fn o200k(text: &str) -> usize {
        Encoding::O200kBase.count(text)
    }

    #[test]
    fn string_content_with_overhead() {
        let body = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"hello world"}]}"#;
        let expected =
            3 + (3 + o200k("system") + o200k("You are helpful.")) + (3 + o200k("user") + 2);
        assert_eq!(count(body), Ok(expected));
    }

    #[test]
    fn name_costs_one_more() {
        let with = count(r#"{"messages":[{"role":"user","name":"bob","content":"hi"}]}"#);
        let without = count(r#"{"messages":[{"role":"user","content":"hi"}]}"#);
        assert_eq!(with, without.map(|n| n + 1 + o200k("bob")));
    }

    #[test]
    fn text_parts_are_counted_images_are_not() {
        let parts = count(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"hello world"},{"type":"image_url","image_url":{"url":"data:x"}}]}]}"#,
        );
        let plain = count(r#"{"messages":[{"role":"user","content":"hello world"}]}"#);
        assert_eq!(parts, plain);
    }

    #[test]
    fn tool_calls_and_tool_results() {
        let body = r#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"c","content":"sunny"}]}"#;
        let expected = 3
            + (3 + o200k("assistant") + o200k("get_weather") + o200k("{\"city\":\"Paris\"}"))
            + (3 + o200k("tool") + o200k("c") + o200k("sunny"));
        assert_eq!(count(body), Ok(expected));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let escaped = count(r#"{"messages":[{"role":"user","content":"a\nb \u00e9"}]}"#);
        let expected = 3 + 3 + o200k("user") + o200k("a\nb \u{e9}");
        assert_eq!(escaped, Ok(expected));
    }

    #[test]
    fn invalid_bodies() {
        for body in [
            "",
            "{}",
            "[]",
            r#"{"messages":"x"}"#,
            r#"{"messages":[{"content":5}]}"#,
        ] {
            assert!(
                matches!(count(body), Err(TokenError::InvalidBody(_))),
                "{body}"
            );
        }
        assert_eq!(
            count_chat_prompt(b"{}", "gpt2"),
            Err(TokenError::UnknownEncoding("gpt2".to_owned()))
        );
    }
}
