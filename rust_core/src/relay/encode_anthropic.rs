//! Encoder of Anthropic Messages streams: `event: <type>\ndata: <json>` events.
//!
//! Text, a refusal and tool calls become content blocks numbered from 0 in the order they open
//! (a refusal is a text block of its own, as `protocols.anthropic.reply_from_chat` makes it); a
//! block is closed when another kind of content starts and at the end. Reasoning is dropped: a
//! thinking block needs Anthropic's signature, and one without makes the client's next turn fail
//! on Anthropic (it is still metered). The finish reason and usage are held for the final
//! `message_delta`, then `message_stop`; a `stop` after tool calls is `tool_use` (some servers say
//! `stop` after them), after a refusal `refusal`.

use super::events::{Event, FinishReason, UpstreamError, Usage};
use super::json::{push_escaped, push_str, push_u64};
use super::RelayConfig;

/// The kind of the open content block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Refusal,
    Tool(usize),
}

/// Encodes normalised events as an Anthropic Messages stream. One per stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct MessagesEncoder {
    started: bool,
    /// The open block and its index.
    open: Option<(BlockKind, u64)>,
    next_index: u64,
    /// Tool call number -> block index.
    tool_blocks: Vec<(usize, u64)>,
    finish: Option<FinishReason>,
    /// A refusal block was opened.
    refused: bool,
}

impl MessagesEncoder {
    /// Writes the events for one normalised event (the finish reason is held for the end;
    /// reasoning is dropped).
    pub(crate) fn event(&mut self, config: &RelayConfig, event: &Event<'_>, out: &mut Vec<u8>) {
        match *event {
            Event::Start { model } => self.start(config, model, out),
            Event::Text(text) => {
                let index = self.block(config, BlockKind::Text, out);
                delta(out, index, b"text_delta", b"text", text);
            }
            Event::Refusal(text) => {
                self.refused = true;
                let index = self.block(config, BlockKind::Refusal, out);
                delta(out, index, b"text_delta", b"text", text);
            }
            Event::ToolStart { call, id, name } => {
                self.start(config, "", out);
                self.close(out);
                let index = self.next_index;
                self.next_index += 1;
                self.open = Some((BlockKind::Tool(call), index));
                self.tool_blocks.push((call, index));
                begin(out, b"content_block_start");
                out.extend_from_slice(br#"{"type":"content_block_start","index":"#);
                push_u64(out, index);
                out.extend_from_slice(br#","content_block":{"type":"tool_use","id":"#);
                push_str(out, id);
                out.extend_from_slice(br#","name":"#);
                push_str(out, name);
                out.extend_from_slice(b",\"input\":{}}}\n\n");
            }
            Event::ToolArgs { call, fragment } => {
                let index = match self.open {
                    Some((BlockKind::Tool(open), index)) if open == call => Some(index),
                    _ => self
                        .tool_blocks
                        .iter()
                        .find(|(known, _)| *known == call)
                        .map(|(_, index)| *index),
                };
                if let Some(index) = index {
                    delta(out, index, b"input_json_delta", b"partial_json", fragment);
                }
            }
            Event::Finish(reason) => self.finish = Some(reason),
            Event::Reasoning(_) | Event::Usage(_) | Event::Done | Event::Error(_) => {}
        }
    }

    /// The upstream's terminal event: close the open block, `message_delta` with the stop reason
    /// and usage, `message_stop`.
    pub(crate) fn end(&mut self, config: &RelayConfig, usage: &Usage, out: &mut Vec<u8>) {
        self.start(config, "", out);
        self.close(out);
        let reason = match self.finish.unwrap_or(FinishReason::Stop) {
            FinishReason::Stop if !self.tool_blocks.is_empty() => FinishReason::ToolCalls,
            FinishReason::Stop if self.refused => FinishReason::ContentFilter,
            reason => reason,
        };
        // Anthropic's input_tokens leaves out the tokens read from and written to the cache.
        let cache = usage
            .cached_tokens
            .saturating_add(usage.cache_creation_tokens);
        begin(out, b"message_delta");
        out.extend_from_slice(br#"{"type":"message_delta","delta":{"stop_reason":""#);
        out.extend_from_slice(reason.anthropic().as_bytes());
        out.extend_from_slice(br#"","stop_sequence":null},"usage":{"input_tokens":"#);
        push_u64(out, usage.prompt_tokens.saturating_sub(cache));
        out.extend_from_slice(br#","output_tokens":"#);
        push_u64(out, usage.completion_tokens);
        out.extend_from_slice(br#","cache_read_input_tokens":"#);
        push_u64(out, usage.cached_tokens);
        out.extend_from_slice(br#","cache_creation_input_tokens":"#);
        push_u64(out, usage.cache_creation_tokens);
        out.extend_from_slice(b"}}\n\n");
        begin(out, b"message_stop");
        out.extend_from_slice(b"{\"type\":\"message_stop\"}\n\n");
    }

    /// An error event: `event: error` with `{"type":"error","error":{"type","message"}}`.
    pub(crate) fn error(out: &mut Vec<u8>, message: &str, kind: &str) {
        begin(out, b"error");
        out.extend_from_slice(br#"{"type":"error","error":{"type":"#);
        push_str(out, kind);
        out.extend_from_slice(br#","message":"#);
        push_str(out, message);
        out.extend_from_slice(b"}}\n\n");
    }

    /// An upstream (OpenAI) error in the client's protocol, its type mapped to Anthropic's.
    pub(crate) fn upstream_error(error: &UpstreamError<'_>, out: &mut Vec<u8>) {
        Self::error(out, error.message, anthropic_error_type(error));
    }

    fn start(&mut self, config: &RelayConfig, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let model = if model.is_empty() {
            &config.model
        } else {
            model
        };
        begin(out, b"message_start");
        out.extend_from_slice(br#"{"type":"message_start","message":{"id":"msg_"#);
        push_escaped(out, &config.request_id);
        out.extend_from_slice(br#"","type":"message","role":"assistant","model":"#);
        push_str(out, model);
        out.extend_from_slice(
            br#","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":"#,
        );
        push_u64(out, config.prompt_tokens);
        out.extend_from_slice(
            br#","output_tokens":0,"cache_read_input_tokens":0,"cache_creation_input_tokens":0}}}"#,
        );
        out.extend_from_slice(b"\n\n");
    }

    /// The index of an open block of `kind`, opening one (and closing another) if needed.
    fn block(&mut self, config: &RelayConfig, kind: BlockKind, out: &mut Vec<u8>) -> u64 {
        self.start(config, "", out);
        if let Some((open, index)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((kind, index));
        begin(out, b"content_block_start");
        out.extend_from_slice(br#"{"type":"content_block_start","index":"#);
        push_u64(out, index);
        out.extend_from_slice(b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
        index
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            begin(out, b"content_block_stop");
            out.extend_from_slice(br#"{"type":"content_block_stop","index":"#);
            push_u64(out, index);
            out.extend_from_slice(b"}\n\n");
        }
    }
}

/// Starts an event: `event: <kind>\ndata: `.
fn begin(out: &mut Vec<u8>, kind: &[u8]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind);
    out.extend_from_slice(b"\ndata: ");
}

/// A `content_block_delta` of `delta_type` carrying `text` under `key`.
fn delta(out: &mut Vec<u8>, index: u64, delta_type: &[u8], key: &[u8], text: &str) {
    begin(out, b"content_block_delta");
    out.extend_from_slice(br#"{"type":"content_block_delta","index":"#);
    push_u64(out, index);
    out.extend_from_slice(br#","delta":{"type":""#);
    out.extend_from_slice(delta_type);
    out.extend_from_slice(br#"",""#);
    out.extend_from_slice(key);
    out.extend_from_slice(br#"":"#);
    push_str(out, text);
    out.extend_from_slice(b"}}\n\n");
}

/// The Anthropic error type for an OpenAI error (by its type, else its code): `api_error` unless
/// it names a kind Anthropic has.
fn anthropic_error_type(error: &UpstreamError<'_>) -> &'static str {
    let names = [error.kind, error.code.unwrap_or("")];
    let has = |needle: &str| names.iter().any(|name| name.contains(needle));
    if has("rate_limit") || has("insufficient_quota") {
        "rate_limit_error"
    } else if has("overloaded") {
        "overloaded_error"
    } else if has("invalid_request") || has("context_length") {
        "invalid_request_error"
    } else if has("authentication") || has("invalid_api_key") {
        "authentication_error"
    } else if has("permission") {
        "permission_error"
    } else if has("not_found") {
        "not_found_error"
    } else {
        "api_error"
    }
}
