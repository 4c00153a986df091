//! The output of a translated Responses stream as JSON: its items (a message with content parts,
//! a function call) and the response object that `response.created` ... `response.completed`
//! carry. [`super::encode_responses`] keeps the items and writes the events around them.

use super::events::Usage;
use super::json::{push_escaped, push_str, push_u64};
use super::RelayConfig;

/// What a message's content part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PartKind {
    /// An `output_text` part.
    Text,
    /// A `refusal` part.
    Refusal,
}

/// One content part of a message item.
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub(super) kind: PartKind,
    pub(super) text: String,
}

/// An output item's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    InProgress,
    Completed,
    Incomplete,
}

impl Status {
    fn name(self) -> &'static [u8] {
        match self {
            Self::InProgress => b"in_progress",
            Self::Completed => b"completed",
            Self::Incomplete => b"incomplete",
        }
    }
}

/// One output item.
#[derive(Debug, Clone)]
pub(super) struct Item {
    /// `None` for a message, the upstream's call id and the name for a function call.
    pub(super) call: Option<(String, String)>,
    /// A message's content parts; the last one is open while the item is.
    pub(super) parts: Vec<Part>,
    /// A function call's arguments.
    pub(super) arguments: String,
    pub(super) status: Status,
    /// `"item_id":...,"output_index":i`, written into every event about the item.
    pub(super) reference: Vec<u8>,
}

impl Item {
    /// Item `index` of the output: a message, or a function call (`call`), in progress.
    pub(super) fn new(config: &RelayConfig, index: usize, call: Option<(String, String)>) -> Self {
        let mut reference = Vec::with_capacity(64);
        reference.extend_from_slice(br#""item_id":"#);
        item_id(&mut reference, config, index, call.is_none());
        reference.extend_from_slice(br#","output_index":"#);
        push_u64(&mut reference, index as u64);
        Self {
            call,
            parts: Vec::new(),
            arguments: String::new(),
            status: Status::InProgress,
            reference,
        }
    }

    /// The item as JSON (item `index` of the output).
    pub(super) fn write(&self, config: &RelayConfig, index: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"id":"#);
        item_id(out, config, index, self.call.is_none());
        match &self.call {
            None => {
                out.extend_from_slice(br#","type":"message","status":""#);
                out.extend_from_slice(self.status.name());
                out.extend_from_slice(br#"","role":"assistant","content":["#);
                for (content, part) in self.parts.iter().enumerate() {
                    if content > 0 {
                        out.push(b',');
                    }
                    write_part(out, part.kind, &part.text);
                }
                out.extend_from_slice(b"]}");
            }
            Some((call_id, name)) => {
                out.extend_from_slice(br#","type":"function_call","status":""#);
                out.extend_from_slice(self.status.name());
                out.extend_from_slice(br#"","call_id":"#);
                push_str(out, call_id);
                out.extend_from_slice(br#","name":"#);
                push_str(out, name);
                out.extend_from_slice(br#","arguments":"#);
                push_str(out, &self.arguments);
                out.push(b'}');
            }
        }
    }
}

/// The response object: in progress (no usage, no output) or final (with `items` and the usage);
/// `incomplete` is the reason the answer was cut, if it was.
pub(super) fn write_response(
    config: &RelayConfig,
    model: &str,
    items: &[Item],
    incomplete: Option<&str>,
    usage: Option<&Usage>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(br#"{"id":"resp_"#);
    push_escaped(out, &config.request_id);
    out.extend_from_slice(br#"","object":"response","created_at":"#);
    push_u64(out, config.created);
    out.extend_from_slice(br#","status":""#);
    out.extend_from_slice(match (usage, incomplete) {
        (None, _) => b"in_progress".as_slice(),
        (Some(_), None) => b"completed",
        (Some(_), Some(_)) => b"incomplete",
    });
    out.extend_from_slice(br#"","error":null,"incomplete_details":"#);
    match incomplete {
        Some(reason) => {
            out.extend_from_slice(br#"{"reason":""#);
            out.extend_from_slice(reason.as_bytes());
            out.extend_from_slice(br#""}"#);
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","instructions":null,"max_output_tokens":null,"model":"#);
    push_str(out, model);
    out.extend_from_slice(br#","output":["#);
    if usage.is_some() {
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            item.write(config, index, out);
        }
    }
    out.extend_from_slice(
        br#"],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":null,"temperature":null,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":null,"truncation":"disabled","metadata":{},"usage":"#,
    );
    match usage {
        Some(usage) => {
            out.extend_from_slice(br#"{"input_tokens":"#);
            push_u64(out, usage.prompt_tokens);
            out.extend_from_slice(br#","input_tokens_details":{"cached_tokens":"#);
            push_u64(out, usage.cached_tokens);
            out.extend_from_slice(br#","cache_write_tokens":"#);
            push_u64(out, usage.cache_creation_tokens);
            out.extend_from_slice(br#"},"output_tokens":"#);
            push_u64(out, usage.completion_tokens);
            out.extend_from_slice(br#","output_tokens_details":{"reasoning_tokens":"#);
            push_u64(out, usage.reasoning_tokens);
            out.extend_from_slice(br#"},"total_tokens":"#);
            push_u64(out, usage.prompt_tokens + usage.completion_tokens);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// `msg_<request id>_<index>` or `fc_<request id>_<index>`, quoted.
fn item_id(out: &mut Vec<u8>, config: &RelayConfig, index: usize, message: bool) {
    out.extend_from_slice(if message { b"\"msg_" } else { b"\"fc_" });
    push_escaped(out, &config.request_id);
    out.push(b'_');
    push_u64(out, index as u64);
    out.push(b'"');
}

/// A content part: `output_text` (no annotations) or `refusal`.
pub(super) fn write_part(out: &mut Vec<u8>, kind: PartKind, text: &str) {
    match kind {
        PartKind::Text => {
            out.extend_from_slice(br#"{"type":"output_text","text":"#);
            push_str(out, text);
            out.extend_from_slice(br#","annotations":[],"logprobs":[]}"#);
        }
        PartKind::Refusal => {
            out.extend_from_slice(br#"{"type":"refusal","refusal":"#);
            push_str(out, text);
            out.push(b'}');
        }
    }
}
