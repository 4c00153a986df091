//! Encoder of OpenAI Responses streams: `event: <type>\ndata: <json>` events, each with an
//! increasing `sequence_number`.
//!
//! `response.created` and `response.in_progress` open the stream; text becomes a `message` item
//! (`output_item.added`, `content_part.added`, `output_text.delta`s, then the `.done` events when
//! it closes), a tool call a `function_call` item (`function_call_arguments.delta`s). The items
//! are kept, since the `.done` events and `response.completed` repeat the whole output.
//! Reasoning is dropped: a Responses reasoning item needs an encrypted summary that chat-like
//! upstreams do not give.

use super::events::{Event, FinishReason, UpstreamError, Usage};
use super::json::{push_escaped, push_opt_str, push_str, push_u64};
use super::RelayConfig;

/// One output item.
#[derive(Debug, Clone)]
struct Item {
    /// `None` for a message, the upstream's call id and the name for a function call.
    call: Option<(String, String)>,
    /// The message's text or the call's arguments.
    text: String,
    done: bool,
    /// `"item_id":...,"output_index":i` (and `"content_index":0` for a message), written into
    /// every event about the item.
    reference: Vec<u8>,
}

impl Item {
    fn new(config: &RelayConfig, index: usize, call: Option<(String, String)>) -> Self {
        let mut reference = Vec::with_capacity(80);
        reference.extend_from_slice(br#""item_id":"#);
        item_id(&mut reference, config, index, call.is_none());
        reference.extend_from_slice(br#","output_index":"#);
        push_u64(&mut reference, index as u64);
        if call.is_none() {
            reference.extend_from_slice(br#","content_index":0"#);
        }
        Self {
            call,
            text: String::new(),
            done: false,
            reference,
        }
    }
}

/// Encodes normalised events as an OpenAI Responses stream. One per stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResponsesEncoder {
    sequence: u64,
    /// The resolved model, once started.
    model: Option<String>,
    items: Vec<Item>,
    /// The open item.
    open: Option<usize>,
    /// Tool call number -> item index.
    tool_items: Vec<(usize, usize)>,
    finish: Option<FinishReason>,
}

impl ResponsesEncoder {
    /// Writes the events for one normalised event (the finish reason is held for the end).
    pub(crate) fn event(&mut self, config: &RelayConfig, event: &Event<'_>, out: &mut Vec<u8>) {
        match *event {
            Event::Start { model } => self.start(config, model, out),
            Event::Text(text) => {
                let index = self.message_item(config, out);
                self.items[index].text.push_str(text);
                self.begin(out, "response.output_text.delta");
                out.extend_from_slice(&self.items[index].reference);
                out.extend_from_slice(br#","delta":"#);
                push_str(out, text);
                out.extend_from_slice(b",\"logprobs\":[]}\n\n");
            }
            Event::ToolStart { call, id, name } => {
                self.start(config, "", out);
                self.close(config, out);
                let index = self.items.len();
                let function = Some((id.to_owned(), name.to_owned()));
                self.items.push(Item::new(config, index, function));
                self.open = Some(index);
                self.tool_items.push((call, index));
                self.begin(out, "response.output_item.added");
                self.item_event_body(config, index, out);
            }
            Event::ToolArgs { call, fragment } => {
                let Some(index) = self
                    .tool_items
                    .iter()
                    .find(|(known, _)| *known == call)
                    .map(|(_, index)| *index)
                else {
                    return;
                };
                self.items[index].text.push_str(fragment);
                self.begin(out, "response.function_call_arguments.delta");
                out.extend_from_slice(&self.items[index].reference);
                out.extend_from_slice(br#","delta":"#);
                push_str(out, fragment);
                out.extend_from_slice(b"}\n\n");
            }
            Event::Finish(reason) => self.finish = Some(reason),
            Event::Reasoning(_) | Event::Usage(_) | Event::Done | Event::Error(_) => {}
        }
    }

    /// The upstream's terminal event: close the open item, then `response.completed` (or
    /// `response.incomplete` when the output was cut by the token limit or a filter) with the
    /// whole output and the usage.
    pub(crate) fn end(&mut self, config: &RelayConfig, usage: &Usage, out: &mut Vec<u8>) {
        self.start(config, "", out);
        self.close(config, out);
        let incomplete = match self.finish {
            Some(FinishReason::Length) => Some("max_output_tokens"),
            Some(FinishReason::ContentFilter) => Some("content_filter"),
            _ => None,
        };
        let kind = match incomplete {
            Some(_) => "response.incomplete",
            None => "response.completed",
        };
        self.begin(out, kind);
        out.extend_from_slice(br#""response":"#);
        self.response(config, incomplete, Some(usage), out);
        out.extend_from_slice(b"}\n\n");
    }

    /// An error event: `{"type":"error","code","message","param":null,"sequence_number"}`.
    pub(crate) fn error(
        out: &mut Vec<u8>,
        sequence: u64,
        message: &str,
        kind: &str,
        code: Option<&str>,
    ) {
        out.extend_from_slice(b"event: error\ndata: {\"type\":\"error\",\"code\":");
        push_opt_str(out, code.or(Some(kind)));
        out.extend_from_slice(br#","message":"#);
        push_str(out, message);
        out.extend_from_slice(br#","param":null,"sequence_number":"#);
        push_u64(out, sequence);
        out.extend_from_slice(b"}\n\n");
    }

    /// An upstream error in the client's protocol; it takes the next sequence number.
    pub(crate) fn upstream_error(&mut self, error: &UpstreamError<'_>, out: &mut Vec<u8>) {
        let kind = if error.kind.is_empty() {
            "api_error"
        } else {
            error.kind
        };
        let sequence = self.next_sequence();
        Self::error(out, sequence, error.message, kind, error.code);
    }

    /// Takes the next sequence number (for an event added after the stream's).
    pub(crate) fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence - 1
    }

    fn start(&mut self, config: &RelayConfig, model: &str, out: &mut Vec<u8>) {
        if self.model.is_some() {
            return;
        }
        let model = if model.is_empty() {
            &config.model
        } else {
            model
        };
        self.model = Some(model.to_owned());
        for kind in ["response.created", "response.in_progress"] {
            self.begin(out, kind);
            out.extend_from_slice(br#""response":"#);
            self.response(config, None, None, out);
            out.extend_from_slice(b"}\n\n");
        }
    }

    /// The open message item, opening one (and closing another item) if needed.
    fn message_item(&mut self, config: &RelayConfig, out: &mut Vec<u8>) -> usize {
        self.start(config, "", out);
        if let Some(index) = self.open.filter(|&i| self.items[i].call.is_none()) {
            return index;
        }
        self.close(config, out);
        let index = self.items.len();
        self.items.push(Item::new(config, index, None));
        self.open = Some(index);
        self.begin(out, "response.output_item.added");
        self.item_event_body(config, index, out);
        self.begin(out, "response.content_part.added");
        out.extend_from_slice(&self.items[index].reference);
        out.extend_from_slice(br#","part":"#);
        output_text(out, "");
        out.extend_from_slice(b"}\n\n");
        index
    }

    fn close(&mut self, config: &RelayConfig, out: &mut Vec<u8>) {
        let Some(index) = self.open.take() else {
            return;
        };
        self.items[index].done = true;
        let item = self.items[index].clone();
        match &item.call {
            None => {
                self.begin(out, "response.output_text.done");
                out.extend_from_slice(&self.items[index].reference);
                out.extend_from_slice(br#","text":"#);
                push_str(out, &item.text);
                out.extend_from_slice(b",\"logprobs\":[]}\n\n");
                self.begin(out, "response.content_part.done");
                out.extend_from_slice(&self.items[index].reference);
                out.extend_from_slice(br#","part":"#);
                output_text(out, &item.text);
                out.extend_from_slice(b"}\n\n");
            }
            Some(_) => {
                self.begin(out, "response.function_call_arguments.done");
                out.extend_from_slice(&self.items[index].reference);
                out.extend_from_slice(br#","arguments":"#);
                push_str(out, &item.text);
                out.extend_from_slice(b"}\n\n");
            }
        }
        self.begin(out, "response.output_item.done");
        self.item_event_body(config, index, out);
    }

    /// Starts an event: `event: <kind>\ndata: {"type":<kind>,"sequence_number":n,`.
    fn begin(&mut self, out: &mut Vec<u8>, kind: &str) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(br#"","sequence_number":"#);
        let sequence = self.next_sequence();
        push_u64(out, sequence);
        out.push(b',');
    }

    /// `"output_index":i,"item":{...}}` and the event's end.
    fn item_event_body(&self, config: &RelayConfig, index: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(br#""output_index":"#);
        push_u64(out, index as u64);
        out.extend_from_slice(br#","item":"#);
        self.item(config, index, out);
        out.extend_from_slice(b"}\n\n");
    }

    fn item(&self, config: &RelayConfig, index: usize, out: &mut Vec<u8>) {
        let item = &self.items[index];
        let status = if item.done {
            "completed"
        } else {
            "in_progress"
        };
        out.extend_from_slice(br#"{"id":"#);
        item_id(out, config, index, item.call.is_none());
        match &item.call {
            None => {
                out.extend_from_slice(br#","type":"message","status":""#);
                out.extend_from_slice(status.as_bytes());
                out.extend_from_slice(br#"","role":"assistant","content":["#);
                if item.done {
                    output_text(out, &item.text);
                }
                out.extend_from_slice(b"]}");
            }
            Some((call_id, name)) => {
                out.extend_from_slice(br#","type":"function_call","status":""#);
                out.extend_from_slice(status.as_bytes());
                out.extend_from_slice(br#"","call_id":"#);
                push_str(out, call_id);
                out.extend_from_slice(br#","name":"#);
                push_str(out, name);
                out.extend_from_slice(br#","arguments":"#);
                push_str(out, if item.done { &item.text } else { "" });
                out.push(b'}');
            }
        }
    }

    /// The response object: in progress (no usage) or final.
    fn response(
        &self,
        config: &RelayConfig,
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
        push_str(out, self.model.as_deref().unwrap_or(&config.model));
        out.extend_from_slice(br#","output":["#);
        if usage.is_some() {
            for index in 0..self.items.len() {
                if index > 0 {
                    out.push(b',');
                }
                self.item(config, index, out);
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
}

/// `msg_<request id>_<index>` or `fc_<request id>_<index>`, quoted.
fn item_id(out: &mut Vec<u8>, config: &RelayConfig, index: usize, message: bool) {
    out.extend_from_slice(if message { b"\"msg_" } else { b"\"fc_" });
    push_escaped(out, &config.request_id);
    out.push(b'_');
    push_u64(out, index as u64);
    out.push(b'"');
}

/// An `output_text` content part.
fn output_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(br#"{"type":"output_text","text":"#);
    push_str(out, text);
    out.extend_from_slice(br#","annotations":[],"logprobs":[]}"#);
}
