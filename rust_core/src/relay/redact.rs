//! The relay's redaction stage (guardrails on streamed answers), between the meter and the
//! encoder: answer text, reasoning, refusals and each tool call's arguments are masked with the
//! guard policy as they stream, exactly as if each had been redacted whole.
//!
//! Each text channel (text, reasoning, refusal, and the arguments of each tool call, by call
//! number) goes through a [`StreamRedactor`] of its own: a fragment's safe part (possibly empty:
//! then no event) is passed on as the same kind of event, and the redactor holds back only what
//! a match could still need. A channel ends, and its held tail is passed on (redacted), when
//! another channel starts (text after a tool call's arguments, reasoning after text, a new tool
//! call; the arguments of tool calls already started may interleave), and at `Finish`, `Done`, an
//! `Error` and the end of the stream ([`Redact::flush`]). Since the event sequence a decoder
//! makes does not depend on how the upstream's bytes were chunked, neither does the output.
//!
//! Redact and block rules mask (an answer is never refused whole), log rules are only counted;
//! the findings are counted per rule ([`Redact::counts`]).
//!
//! Cost: a redactor's work per piece of text does not depend on the piece's size, and nearly all
//! the pieces of a stream are a few bytes. Since a redactor emits nothing until it holds at least
//! the longest match of its rules, and its output does not depend on how its text is split, each
//! channel gathers its fragments and hands them over only once the redactor could emit (with an
//! eighth of that bound more, so that long answers are pushed in a few large pieces): the same
//! bytes come out, at most that eighth later.

use super::events::Event;
use crate::scan::{Policy, StreamRedactor, OFF};

/// A text channel of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Text,
    Reasoning,
    Refusal,
    /// A tool call's arguments, by call number.
    Tool(usize),
}

impl Channel {
    /// The event carrying `text` on this channel.
    fn event(self, text: &str) -> Event<'_> {
        match self {
            Self::Text => Event::Text(text),
            Self::Reasoning => Event::Reasoning(text),
            Self::Refusal => Event::Refusal(text),
            Self::Tool(call) => Event::ToolArgs {
                call,
                fragment: text,
            },
        }
    }

    fn is_tool(self) -> bool {
        matches!(self, Self::Tool(_))
    }
}

/// A redactor that is handed its channel's text in batches (see the module docs).
#[derive(Debug)]
pub(crate) struct Batched {
    redactor: StreamRedactor,
    /// Text of the channel not yet handed to the redactor.
    pending: String,
    /// The text goes to the redactor once the two hold this much.
    batch: usize,
}

impl Batched {
    /// A redactor of `policy`'s rules.
    pub(crate) fn new(policy: &Policy) -> Self {
        let scanner = policy.scanner();
        let hold = (0..scanner.len())
            .filter(|&rule| policy.action(rule) != OFF)
            .map(|rule| scanner.max_len(rule))
            .max()
            .unwrap_or(0);
        Self {
            redactor: StreamRedactor::new(policy),
            pending: String::new(),
            batch: hold + hold / 8,
        }
    }

    /// Takes the next piece of the channel; appends to `out` what is safe to send.
    pub(crate) fn push(&mut self, text: &str, out: &mut String) {
        self.pending.push_str(text);
        if self.redactor.held() + self.pending.len() >= self.batch {
            self.redactor.push(&self.pending, out);
            self.pending.clear();
        }
    }

    /// Ends the channel: appends the rest of it, redacted, to `out`.
    pub(crate) fn finish(&mut self, out: &mut String) {
        self.redactor.push(&self.pending, out);
        self.pending.clear();
        self.redactor.finish(out);
    }

    /// Findings so far per rule index.
    pub(crate) fn counts(&self) -> &[u64] {
        self.redactor.counts()
    }
}

/// One redactor and the channel it serves while it holds text.
#[derive(Debug)]
struct Slot {
    channel: Channel,
    redactor: Batched,
    /// The channel received text since its redactor was last finished.
    open: bool,
}

/// The redaction stage of one relay.
#[derive(Debug)]
pub(crate) struct Redact {
    policy: Policy,
    /// The redactors: one per open channel; a finished one serves the next channel that opens
    /// (a finished redactor is as good as a new one, and it keeps its counts).
    slots: Vec<Slot>,
    /// Reused buffer for what a redactor lets through.
    safe: String,
}

impl Redact {
    /// A stage masking with `policy`.
    pub(crate) fn new(policy: Policy) -> Self {
        Self {
            policy,
            slots: Vec::new(),
            safe: String::new(),
        }
    }

    /// The policy.
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Passes `event` on to `next`, redacted: a text fragment is replaced by what is safe to send
    /// of its channel (nothing when all of it is held); a channel that ends first sends its held
    /// tail. `Done` and `Error` flush every channel but are not passed on (the stage ends the
    /// stream itself).
    pub(crate) fn event(&mut self, event: &Event<'_>, next: &mut impl FnMut(&Event<'_>)) {
        match *event {
            Event::Text(text) => self.fragment(Channel::Text, text, next),
            Event::Reasoning(text) => self.fragment(Channel::Reasoning, text, next),
            Event::Refusal(text) => self.fragment(Channel::Refusal, text, next),
            Event::ToolArgs { call, fragment } => {
                self.fragment(Channel::Tool(call), fragment, next)
            }
            Event::ToolStart { .. } | Event::Finish(_) => {
                self.flush(next);
                next(event);
            }
            Event::Done | Event::Error(_) => self.flush(next),
            Event::Start { .. } | Event::Usage(_) => next(event),
        }
    }

    /// Ends every open channel: passes on each one's held tail (redacted), in the order the
    /// channels opened.
    pub(crate) fn flush(&mut self, next: &mut impl FnMut(&Event<'_>)) {
        self.end_where(|_| true, next);
    }

    /// Findings so far per rule index (masked and logged), over every channel.
    pub(crate) fn counts(&self) -> Vec<u64> {
        let mut counts = vec![0; self.policy.scanner().len()];
        for slot in &self.slots {
            for (total, count) in counts.iter_mut().zip(slot.redactor.counts()) {
                *total += count;
            }
        }
        counts
    }

    fn fragment(&mut self, channel: Channel, text: &str, next: &mut impl FnMut(&Event<'_>)) {
        // Text channels end each other and the tool calls; tool calls' arguments may interleave.
        self.end_where(
            |open| open != channel && !(open.is_tool() && channel.is_tool()),
            next,
        );
        let index = self.slot(channel);
        let slot = &mut self.slots[index];
        slot.open = true;
        let mut safe = std::mem::take(&mut self.safe);
        safe.clear();
        slot.redactor.push(text, &mut safe);
        if !safe.is_empty() {
            next(&channel.event(&safe));
        }
        self.safe = safe;
    }

    /// The slot of `channel`: its open one, else a finished one (or a new one) assigned to it, last.
    fn slot(&mut self, channel: Channel) -> usize {
        if let Some(index) = self
            .slots
            .iter()
            .position(|s| s.open && s.channel == channel)
        {
            return index;
        }
        // Kept in the order the channels opened: a reused slot moves to the end.
        let slot = match self.slots.iter().position(|s| !s.open) {
            Some(index) => Slot {
                channel,
                ..self.slots.remove(index)
            },
            None => Slot {
                channel,
                redactor: Batched::new(&self.policy),
                open: false,
            },
        };
        self.slots.push(slot);
        self.slots.len() - 1
    }

    /// Ends the open channels `ends` selects, in the order they opened.
    fn end_where(&mut self, ends: impl Fn(Channel) -> bool, next: &mut impl FnMut(&Event<'_>)) {
        if !self.slots.iter().any(|s| s.open) {
            return;
        }
        let mut tail = std::mem::take(&mut self.safe);
        for slot in self.slots.iter_mut().filter(|s| s.open && ends(s.channel)) {
            tail.clear();
            slot.redactor.finish(&mut tail);
            slot.open = false;
            if !tail.is_empty() {
                next(&slot.channel.event(&tail));
            }
        }
        self.safe = tail;
    }
}
