//! A guarded relay of an OpenAI Responses upstream to a Responses client (the relay has no
//! decoder that translates a Responses stream, so this pair is rewritten in place): every event
//! goes on as the upstream sent it, numbered as it was, with only its text masked.
//!
//! - A text delta (any `response.*.delta` event with a string `delta`: output text, refusals,
//!   function call and custom tool arguments, reasoning text and summaries, ...) goes through
//!   the stream redactor of its channel (the event type, `item_id`, `output_index`,
//!   `content_index` and `summary_index`); its `delta` becomes the safe part (possibly empty).
//!   Each delta event is held until the next event, so that when its channel ends (any other
//!   event: the `.done` event, the next item, the end) the channel's held tail is sent in it:
//!   no event is added or dropped and the sequence numbers stay the upstream's.
//! - Every other event has its strings masked whole ([`crate::scan::scan_json`]; the `.done`
//!   events, items and the final response repeat the text the deltas carried), except the
//!   opaque audio and image data events, passed on unchanged.
//!
//! Findings are counted on the deltas only (the whole texts repeat them).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::push_str;
use super::redact::Batched;
use crate::scan::{scan_json, Policy, BLOCK, REDACT};

/// What says whether an event is a text delta, and of which text.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    item_id: Option<Cow<'a, str>>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default)]
    content_index: Option<u64>,
    #[serde(default)]
    summary_index: Option<u64>,
}

/// A text channel: the delta event type and the indices that name its text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    kind: String,
    item: String,
    indices: [Option<u64>; 3],
}

impl Key {
    fn is(&self, head: &Head<'_>, kind: &str) -> bool {
        self.kind == kind
            && self.item == head.item_id.as_deref().unwrap_or("")
            && self.indices == [head.output_index, head.content_index, head.summary_index]
    }
}

/// The last delta event of the open channel, not sent yet: its data around the `delta` value,
/// and the text it will carry.
#[derive(Debug, Default)]
struct Held {
    name: String,
    before: String,
    after: String,
    text: String,
}

/// The in-place redaction of one Responses stream.
#[derive(Debug)]
pub(crate) struct ResponsesRedact {
    policy: Policy,
    /// The action bytes, block masked as redact.
    masks: Vec<u8>,
    redactor: Batched,
    /// The open channel, and its last delta event.
    open: Option<(Key, Held)>,
    /// Reused buffer for an event's data.
    data: Vec<u8>,
}

impl ResponsesRedact {
    /// Masks with `policy`.
    pub(crate) fn new(policy: Policy) -> Self {
        let masks = policy
            .actions()
            .iter()
            .map(|&a| if a == BLOCK { REDACT } else { a })
            .collect();
        Self {
            redactor: Batched::new(&policy),
            policy,
            masks,
            open: None,
            data: Vec::new(),
        }
    }

    /// The policy.
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Findings so far per rule index.
    pub(crate) fn counts(&self) -> Vec<u64> {
        self.redactor.counts().to_vec()
    }

    /// Writes the upstream event `name` with `data` (masked) to `out`, or holds it.
    pub(crate) fn event(&mut self, name: &str, data: &str, out: &mut Vec<u8>) {
        // The event line names the type (read `type` only for a delta, or when there is none):
        // the large events (whole items, the response) are read once, by the scan.
        let read = name == "message" || name.ends_with(".delta");
        let head = read
            .then(|| serde_json::from_str::<Head<'_>>(data).ok())
            .flatten();
        let kind = head
            .as_ref()
            .and_then(|h| h.kind.as_deref())
            .unwrap_or(name);
        if OPAQUE.contains(&kind) {
            self.flush(out);
            write_event(out, name, data.as_bytes());
            return;
        }
        let delta = head
            .as_ref()
            .filter(|_| kind.ends_with(".delta"))
            .and_then(|h| {
                let raw = h.delta?;
                let text = serde_json::from_str::<Cow<'_, str>>(raw.get()).ok()?;
                let start = raw.get().as_ptr() as usize - data.as_ptr() as usize;
                Some((h, text, start, start + raw.get().len()))
            });
        let Some((head, text, start, end)) = delta else {
            self.flush(out);
            self.write_masked(name, data, out);
            return;
        };
        match &mut self.open {
            Some((key, held)) if key.is(head, kind) => {
                // The channel's previous delta goes out with what was safe when it came.
                self.data.clear();
                self.data.extend_from_slice(held.before.as_bytes());
                push_str(&mut self.data, &held.text);
                self.data.extend_from_slice(held.after.as_bytes());
                write_event(out, &held.name, &self.data);
            }
            _ => {
                self.flush(out);
                let key = Key {
                    kind: kind.to_owned(),
                    item: head.item_id.as_deref().unwrap_or("").to_owned(),
                    indices: [head.output_index, head.content_index, head.summary_index],
                };
                self.open = Some((key, Held::default()));
            }
        }
        if let Some((_, held)) = &mut self.open {
            held.name.clear();
            held.name.push_str(name);
            held.before.clear();
            held.before.push_str(&data[..start]);
            held.after.clear();
            held.after.push_str(&data[end..]);
            held.text.clear();
            self.redactor.push(&text, &mut held.text);
        }
    }

    /// Ends the open channel: its last delta event goes out with the held tail.
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) {
        let Some((_, mut held)) = self.open.take() else {
            return;
        };
        self.redactor.finish(&mut held.text);
        self.data.clear();
        self.data.extend_from_slice(held.before.as_bytes());
        push_str(&mut self.data, &held.text);
        self.data.extend_from_slice(held.after.as_bytes());
        write_event(out, &held.name, &self.data);
    }

    /// Writes an event with every string masked whole (unchanged when nothing is found, or when
    /// it is not JSON).
    fn write_masked(&mut self, name: &str, data: &str, out: &mut Vec<u8>) {
        match scan_json(self.policy.scanner(), data.as_bytes(), &self.masks) {
            Ok(scan) => match scan.body {
                Some(body) => write_event(out, name, &body),
                None => write_event(out, name, data.as_bytes()),
            },
            Err(_) => write_event(out, name, data.as_bytes()),
        }
    }
}

/// Events whose data is opaque (base64 audio and images): passed on unscanned.
const OPAQUE: [&str; 2] = [
    "response.audio.delta",
    "response.image_generation_call.partial_image",
];

/// Writes one SSE event: its `event` line (none for the default type, `message`) and one `data`
/// line per line of `data`.
fn write_event(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.reserve(name.len() + data.len() + 16);
    if name != "message" {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    let mut rest = data;
    while let Some(at) = memchr::memchr(b'\n', rest) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..=at]);
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(rest);
    out.extend_from_slice(b"\n\n");
}
