//! Encoder of OpenAI Responses streams: `event: <type>\ndata: <json>` events, each with an
//! increasing `sequence_number`.
//!
//! `response.created` and `response.in_progress` open the stream. Text and refusals become a
//! `message` item (`output_item.added`; per content part `content_part.added`, its
//! `output_text.delta`s or `refusal.delta`s and, when it closes, `output_text.done` or
//! `refusal.done` and `content_part.done`; `output_item.done` when the item closes), a tool call a
//! `function_call` item (`function_call_arguments.delta`s). The items are kept, since the `.done`
//! events and the final response repeat the whole output. When the token limit or a filter cut
//! the answer, the response is `incomplete` and so are its message items, as
//! `protocols.responses.reply_from_chat` has them (a message closed earlier, before a tool call,
//! was `completed` in its `output_item.done`: the stream could not know yet).
//! Reasoning is dropped: a Responses reasoning item needs an encrypted summary that chat-like
//! upstreams do not give.

use super::events::{Event, FinishReason, UpstreamError, Usage};
use super::json::{push_opt_str, push_str, push_u64};
use super::responses_output::{write_part, write_response, Item, Part, PartKind, Status};
use super::RelayConfig;

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
            Event::Text(text) => self.content(config, PartKind::Text, text, out),
            Event::Refusal(text) => self.content(config, PartKind::Refusal, text, out),
            Event::ToolStart { call, id, name } => {
                self.start(config, "", out);
                self.close(config, out);
                let index = self.items.len();
                let function = Some((id.to_owned(), name.to_owned()));
                self.items.push(Item::new(config, index, function));
                self.open = Some(index);
                self.tool_items.push((call, index));
                begin(&mut self.sequence, out, "response.output_item.added");
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
                let item = &mut self.items[index];
                item.arguments.push_str(fragment);
                begin(
                    &mut self.sequence,
                    out,
                    "response.function_call_arguments.delta",
                );
                out.extend_from_slice(&item.reference);
                out.extend_from_slice(br#","delta":"#);
                push_str(out, fragment);
                out.extend_from_slice(b"}\n\n");
            }
            Event::Finish(reason) => self.finish = Some(reason),
            Event::Reasoning(_) | Event::Usage(_) | Event::Done | Event::Error(_) => {}
        }
    }

    /// The upstream's terminal event: close the open item, then `response.completed` (or
    /// `response.incomplete`, its message items too, when the output was cut by the token limit
    /// or a filter) with the whole output and the usage.
    pub(crate) fn end(&mut self, config: &RelayConfig, usage: &Usage, out: &mut Vec<u8>) {
        self.start(config, "", out);
        let incomplete = match self.finish {
            Some(FinishReason::Length) => Some("max_output_tokens"),
            Some(FinishReason::ContentFilter) => Some("content_filter"),
            _ => None,
        };
        if incomplete.is_some() {
            for item in self.items.iter_mut().filter(|item| item.call.is_none()) {
                item.status = Status::Incomplete;
            }
        }
        self.close(config, out);
        let kind = match incomplete {
            Some(_) => "response.incomplete",
            None => "response.completed",
        };
        begin(&mut self.sequence, out, kind);
        out.extend_from_slice(br#""response":"#);
        let model = self.model.as_deref().unwrap_or(&config.model);
        write_response(config, model, &self.items, incomplete, Some(usage), out);
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
            begin(&mut self.sequence, out, kind);
            out.extend_from_slice(br#""response":"#);
            write_response(config, model, &self.items, None, None, out);
            out.extend_from_slice(b"}\n\n");
        }
    }

    /// Text or refusal text: a delta of the open message item's part of `kind` (opening the item
    /// and the part as needed).
    fn content(&mut self, config: &RelayConfig, kind: PartKind, text: &str, out: &mut Vec<u8>) {
        let index = self.message_item(config, out);
        let content = self.part(index, kind, out);
        let item = &mut self.items[index];
        if let Some(part) = item.parts.last_mut() {
            part.text.push_str(text);
        }
        let event = match kind {
            PartKind::Text => "response.output_text.delta",
            PartKind::Refusal => "response.refusal.delta",
        };
        begin(&mut self.sequence, out, event);
        out.extend_from_slice(&item.reference);
        out.extend_from_slice(br#","content_index":"#);
        push_u64(out, content as u64);
        out.extend_from_slice(br#","delta":"#);
        push_str(out, text);
        out.extend_from_slice(match kind {
            PartKind::Text => b",\"logprobs\":[]}\n\n".as_slice(),
            PartKind::Refusal => b"}\n\n",
        });
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
        begin(&mut self.sequence, out, "response.output_item.added");
        self.item_event_body(config, index, out);
        index
    }

    /// The content index of message item `index`'s open part of `kind`, opening one (and closing
    /// the open part of the other kind) if needed.
    fn part(&mut self, index: usize, kind: PartKind, out: &mut Vec<u8>) -> usize {
        let open = self.items[index].parts.last().map(|part| part.kind);
        if open == Some(kind) {
            return self.items[index].parts.len() - 1;
        }
        self.close_part(index, out);
        let item = &mut self.items[index];
        item.parts.push(Part {
            kind,
            text: String::new(),
        });
        let content = item.parts.len() - 1;
        begin(&mut self.sequence, out, "response.content_part.added");
        part_event_body(item, content, out);
        content
    }

    /// Closes message item `index`'s open part (its last), if it has one: the text's `.done`
    /// event and `content_part.done`.
    fn close_part(&mut self, index: usize, out: &mut Vec<u8>) {
        let item = &self.items[index];
        let Some(content) = item.parts.len().checked_sub(1) else {
            return;
        };
        let part = &item.parts[content];
        let (event, key): (&str, &[u8]) = match part.kind {
            PartKind::Text => ("response.output_text.done", br#","text":"#),
            PartKind::Refusal => ("response.refusal.done", br#","refusal":"#),
        };
        begin(&mut self.sequence, out, event);
        out.extend_from_slice(&item.reference);
        out.extend_from_slice(br#","content_index":"#);
        push_u64(out, content as u64);
        out.extend_from_slice(key);
        push_str(out, &part.text);
        out.extend_from_slice(match part.kind {
            PartKind::Text => b",\"logprobs\":[]}\n\n".as_slice(),
            PartKind::Refusal => b"}\n\n",
        });
        begin(&mut self.sequence, out, "response.content_part.done");
        part_event_body(item, content, out);
    }

    fn close(&mut self, config: &RelayConfig, out: &mut Vec<u8>) {
        let Some(index) = self.open.take() else {
            return;
        };
        if self.items[index].status == Status::InProgress {
            self.items[index].status = Status::Completed;
        }
        if self.items[index].call.is_none() {
            self.close_part(index, out);
        } else {
            let item = &self.items[index];
            begin(
                &mut self.sequence,
                out,
                "response.function_call_arguments.done",
            );
            out.extend_from_slice(&item.reference);
            out.extend_from_slice(br#","arguments":"#);
            push_str(out, &item.arguments);
            out.extend_from_slice(b"}\n\n");
        }
        begin(&mut self.sequence, out, "response.output_item.done");
        self.item_event_body(config, index, out);
    }

    /// `"output_index":i,"item":{...}}` and the event's end.
    fn item_event_body(&self, config: &RelayConfig, index: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(br#""output_index":"#);
        push_u64(out, index as u64);
        out.extend_from_slice(br#","item":"#);
        self.items[index].write(config, index, out);
        out.extend_from_slice(b"}\n\n");
    }
}

/// Starts an event: `event: <kind>\ndata: {"type":<kind>,"sequence_number":n,` (taking the
/// next sequence number).
fn begin(sequence: &mut u64, out: &mut Vec<u8>, kind: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(br#"","sequence_number":"#);
    push_u64(out, *sequence);
    *sequence += 1;
    out.push(b',');
}

/// `"item_id":..,"output_index":i,"content_index":c,"part":{...}}` and the event's end.
fn part_event_body(item: &Item, content: usize, out: &mut Vec<u8>) {
    let part = &item.parts[content];
    out.extend_from_slice(&item.reference);
    out.extend_from_slice(br#","content_index":"#);
    push_u64(out, content as u64);
    out.extend_from_slice(br#","part":"#);
    write_part(out, part.kind, &part.text);
    out.extend_from_slice(b"}\n\n");
}
