//! The passthrough fast path (source protocol == target protocol): the upstream's bytes go to
//! the client unchanged, cut only between whole blocks; an incomplete trailing event is held
//! until it completes. An OpenAI chat stream may lose its usage-only chunk or gain one before
//! `data: [DONE]`; nothing else is touched.
//!
//! Offsets are those of the raw stream, as [`crate::sse::Block::end`] reports them: the bytes not
//! yet sent are the held tail of earlier chunks followed by the current chunk.

use super::encode_openai::ChatEncoder;
use super::stage::{Action, Stage};
use super::{deliver, Outcome, Protocol, Relayed, StreamRelay};
use crate::error::SseError;

/// The bytes of the stream not sent yet that precede the current chunk.
#[derive(Debug, Clone, Default)]
pub(crate) struct Held {
    /// The held tail (whole blocks are never held).
    pub(crate) bytes: Vec<u8>,
    /// Stream offset of the end of the bytes fed so far.
    pub(crate) fed: u64,
    /// A block dropped from the stream ended with the CR that ended its chunk: an LF starting
    /// the next chunk is that CR's and is dropped too.
    pub(crate) lf_pending: bool,
}

/// The unsent bytes during one feed: the held tail, then the chunk.
pub(crate) struct Window<'a> {
    pub(crate) held: &'a [u8],
    pub(crate) chunk: &'a [u8],
    /// Stream offset of the chunk's first byte.
    pub(crate) chunk_start: u64,
}

impl Window<'_> {
    /// Stream offset of the first unsent byte.
    pub(crate) fn start(&self) -> u64 {
        self.chunk_start - self.held.len() as u64
    }

    /// Stream offset of the end of the chunk.
    pub(crate) fn end(&self) -> u64 {
        self.chunk_start + self.chunk.len() as u64
    }

    /// The stream byte at `offset`, if it is in the window.
    pub(crate) fn byte_at(&self, offset: u64) -> Option<u8> {
        let held_start = self.start();
        if offset < self.chunk_start {
            self.held
                .get(usize::try_from(offset.checked_sub(held_start)?).ok()?)
                .copied()
        } else {
            self.chunk
                .get(usize::try_from(offset - self.chunk_start).ok()?)
                .copied()
        }
    }

    /// Appends the stream bytes `from..to` (within the window) to `out`.
    pub(crate) fn copy(&self, from: u64, to: u64, out: &mut Vec<u8>) {
        let held_start = self.start();
        if from < self.chunk_start {
            let end = to.min(self.chunk_start);
            out.extend_from_slice(
                &self.held[(from - held_start) as usize..(end - held_start) as usize],
            );
        }
        if to > self.chunk_start {
            let begin = from.max(self.chunk_start);
            out.extend_from_slice(
                &self.chunk[(begin - self.chunk_start) as usize..(to - self.chunk_start) as usize],
            );
        }
    }
}

impl Held {
    /// After a feed whose last whole block ended at `sent_to`: keep the bytes after it.
    pub(crate) fn keep_after(&mut self, sent_to: u64, chunk: &[u8]) {
        let chunk_start = self.fed;
        self.fed += chunk.len() as u64;
        if sent_to >= chunk_start {
            self.bytes.clear();
            self.bytes
                .extend_from_slice(&chunk[(sent_to - chunk_start) as usize..]);
        } else {
            let held_start = chunk_start - self.bytes.len() as u64;
            self.bytes.drain(..(sent_to - held_start) as usize);
            self.bytes.extend_from_slice(chunk);
        }
    }
}

impl StreamRelay {
    /// Feeds one chunk of a passthrough: see the module docs.
    pub(super) fn pass(&mut self, chunk: &[u8]) -> Result<Relayed<'_>, SseError> {
        let Self {
            config,
            parser,
            decoder,
            meter,
            held,
            out,
            ..
        } = self;
        let window = Window {
            held: &held.bytes,
            chunk,
            chunk_start: held.fed,
        };
        let drop_usage = config.source == Protocol::OpenAiChat && !config.include_usage;
        // `sent`: the first byte not yet in `out`; `last`: the end of the last whole block.
        let (mut sent, mut last) = (window.start(), window.start());
        let mut modified = false;
        let result = parser.feed_blocks(chunk, |block| {
            let start = std::mem::replace(&mut last, block.end);
            if std::mem::take(&mut held.lf_pending) && window.byte_at(sent) == Some(b'\n') {
                sent += 1;
                modified = true;
            }
            let Some(event) = block.event else {
                return;
            };
            // An event block starting with LF: the LF ends the CRLF of the block before, split
            // from it by a chunk boundary; it stays with that block.
            let start = start + u64::from(window.byte_at(start) == Some(b'\n'));
            let mut stage = Stage {
                config,
                meter: &mut *meter,
                encoder: None,
                redact: None,
                out: &mut *out,
                action: Action::Keep,
            };
            let outcome = decoder.decode(&event.data, &mut stage);
            if outcome == Outcome::UsageOnly && drop_usage {
                window.copy(sent, start, out);
                sent = block.end;
                // Dropped up to a CR that ends the chunk: the LF after it goes with it.
                held.lf_pending =
                    block.end == window.end() && window.byte_at(block.end - 1) == Some(b'\r');
                modified = true;
            } else if stage.action == Action::InsertUsage {
                window.copy(sent, start, out);
                if let Some(usage) = meter.usage {
                    let model = meter.model.as_deref().unwrap_or(&config.model);
                    ChatEncoder::default().usage_chunk_for(config, model, &usage, out);
                }
                sent = start;
                modified = true;
            }
        });
        let end = window.end();
        if result.is_ok() && !modified && window.held.is_empty() && last == end {
            held.fed = end;
            return Ok(Relayed::Unchanged);
        }
        window.copy(sent, last, out);
        held.keep_after(last, chunk);
        deliver(result, out).map(Relayed::Bytes)
    }
}
