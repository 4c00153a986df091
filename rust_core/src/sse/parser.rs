//! Incremental server-sent events parser, following the WHATWG HTML "event stream
//! interpretation" rules.
//!
//! Bytes go in as they arrive from the network, split anywhere (inside a CRLF pair, inside a
//! UTF-8 sequence); complete events come out. Supported: LF, CR and CRLF line endings, an
//! optional leading BOM, comments (lines starting with `:`), the `data` (multi-line, joined by
//! `\n`), `event`, `id` and `retry` fields. Field values are decoded as UTF-8 with replacement
//! characters for invalid sequences, as the spec's decoder does.
//!
//! [`SseParser::feed_blocks`] also reports where each block (the lines up to a blank line) ends
//! in the raw stream, so a relay can pass the upstream bytes on unchanged, cut only between whole
//! events.
//!
//! Two deliberate choices:
//! - **Bounds.** A line longer than `max_event_bytes`, or an event whose data grows beyond it,
//!   is an [`SseError`]; the parser never buffers more than about twice that bound, so a hostile
//!   upstream cannot eat memory. Errors are sticky: the stream is not trusted afterwards.
//! - **End of stream.** [`SseParser::finish`] treats a pending unterminated line as terminated
//!   and dispatches a pending event, where the spec would discard it: a gateway would rather not
//!   lose a final usage chunk to a proxy that dropped the last blank line.

use std::borrow::Cow;

use memchr::{memchr, memchr2};

use crate::error::SseError;

/// Default bound on one line and on the data of one event: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// The UTF-8 byte order mark, stripped once at the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Buffers larger than this are released after an event instead of being kept for reuse.
const KEEP_CAPACITY: usize = 64 * 1024;

/// An event as dispatched by [`SseParser::feed_with`], borrowing the parser's buffers (no
/// allocation unless the data is not valid UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// The event type: the last `event` field of the block, `"message"` when there was none.
    pub event: &'a str,
    /// The `data` lines of the block joined by `\n`.
    pub data: Cow<'a, str>,
    /// The last event id of the stream (it persists across events, per the spec), `None` if no
    /// `id` field has been seen.
    pub id: Option<&'a str>,
    /// The value of a valid `retry` field in this event's block, if any.
    pub retry: Option<u64>,
}

/// One block of the stream, ended by a blank line (or by the end of the stream), as reported by
/// [`SseParser::feed_blocks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block<'a> {
    /// The event the block dispatched; `None` for a block without data (comments only, a lone
    /// blank line, ...).
    pub event: Option<EventRef<'a>>,
    /// Offset in the raw stream (every byte fed so far, BOM included) just past the block's blank
    /// line: the bytes before it are whole blocks.
    pub end: u64,
}

/// An owned event, as returned by [`SseParser::feed`] and [`SseParser::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type, `"message"` by default.
    pub event: String,
    /// The data lines joined by `\n`.
    pub data: String,
    /// The last event id of the stream, if any.
    pub id: Option<String>,
    /// The `retry` value (milliseconds) given in this event's block, if any.
    pub retry: Option<u64>,
}

impl From<EventRef<'_>> for SseEvent {
    fn from(event: EventRef<'_>) -> Self {
        Self {
            event: event.event.to_owned(),
            data: event.data.into_owned(),
            id: event.id.map(str::to_owned),
            retry: event.retry,
        }
    }
}

/// The incremental parser. One per stream; not shared between threads without a lock.
#[derive(Debug, Clone)]
pub struct SseParser {
    max_event_bytes: usize,
    /// Start of stream: a BOM may still follow; `head` holds the bytes seen so far.
    at_start: bool,
    head: Vec<u8>,
    /// The unterminated tail of the input.
    line: Vec<u8>,
    /// The data buffer, each data line followed by `\n`.
    data: Vec<u8>,
    event_type: String,
    last_id: Option<String>,
    retry: Option<u64>,
    /// The previous chunk ended with CR: an LF at the start of the next one is part of it.
    skip_lf: bool,
    /// Bytes fed so far (the offset of the end of the raw stream).
    fed: u64,
    failed: Option<SseError>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser bounding each line, and the data of each event, to `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            at_start: true,
            head: Vec::new(),
            line: Vec::new(),
            data: Vec::new(),
            event_type: String::new(),
            last_id: None,
            retry: None,
            skip_lf: false,
            fed: 0,
            failed: None,
        }
    }

    /// The configured bound on one line and on the data of one event.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Feeds the next chunk of the stream and calls `on_event` for every event it completes.
    ///
    /// Events dispatched before an error have been delivered; after an error every call returns
    /// it again.
    pub fn feed_with<F>(&mut self, chunk: &[u8], mut on_event: F) -> Result<(), SseError>
    where
        F: FnMut(EventRef<'_>),
    {
        self.feed_blocks(chunk, |block| {
            if let Some(event) = block.event {
                on_event(event);
            }
        })
    }

    /// Feeds the next chunk and calls `on_block` for every block it completes, with the event
    /// the block dispatched, if any, and where the block ends in the raw stream.
    ///
    /// ```
    /// # use _core::sse::SseParser;
    /// let mut parser = SseParser::default();
    /// let mut ends = Vec::new();
    /// parser.feed_blocks(b": hi\n\ndata: x\n\ndata: y", |block| ends.push(block.end))?;
    /// assert_eq!(ends, [6, 15]);
    /// # Ok::<(), _core::error::SseError>(())
    /// ```
    pub fn feed_blocks<F>(&mut self, chunk: &[u8], mut on_block: F) -> Result<(), SseError>
    where
        F: FnMut(Block<'_>),
    {
        self.guarded(|parser| parser.feed_inner(chunk, &mut on_block))
    }

    /// Ends the stream: a pending unterminated line is processed and a pending event is
    /// dispatched (see the module docs). The parser is then reset for a new stream.
    pub fn finish_with<F>(&mut self, mut on_event: F) -> Result<(), SseError>
    where
        F: FnMut(EventRef<'_>),
    {
        let mut on_block = |block: Block<'_>| {
            if let Some(event) = block.event {
                on_event(event);
            }
        };
        self.guarded(|parser| parser.finish_inner(&mut on_block))?;
        *self = Self::new(self.max_event_bytes);
        Ok(())
    }

    /// Feeds the next chunk and returns the events it completes, owned.
    ///
    /// No event is lost to an error: when the chunk completes events before breaking a bound,
    /// they are returned and the error comes with the next call (errors are sticky).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        let result = self.feed_with(chunk, |event| events.push(event.into()));
        Self::deliver(result, events)
    }

    /// Ends the stream and returns the events still pending (at most one), owned.
    pub fn finish(&mut self) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        let result = self.finish_with(|event| events.push(event.into()));
        Self::deliver(result, events)
    }

    fn deliver(
        result: Result<(), SseError>,
        events: Vec<SseEvent>,
    ) -> Result<Vec<SseEvent>, SseError> {
        match result {
            Err(error) if events.is_empty() => Err(error),
            _ => Ok(events),
        }
    }

    fn guarded(
        &mut self,
        work: impl FnOnce(&mut Self) -> Result<(), SseError>,
    ) -> Result<(), SseError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = work(self);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.line = Vec::new();
            self.data = Vec::new();
        }
        result
    }

    fn feed_inner<F: FnMut(Block<'_>)>(
        &mut self,
        chunk: &[u8],
        on_event: &mut F,
    ) -> Result<(), SseError> {
        self.fed += chunk.len() as u64;
        if !self.at_start {
            return self.process(chunk, on_event);
        }
        if self.head.is_empty() && chunk.len() >= BOM.len() {
            self.at_start = false;
            return self.process(chunk.strip_prefix(BOM).unwrap_or(chunk), on_event);
        }
        self.head.extend_from_slice(chunk);
        if self.head.len() < BOM.len() && BOM.starts_with(&self.head) {
            return Ok(());
        }
        self.at_start = false;
        let head = std::mem::take(&mut self.head);
        self.process(head.strip_prefix(BOM).unwrap_or(&head), on_event)
    }

    fn finish_inner<F: FnMut(Block<'_>)>(&mut self, on_event: &mut F) -> Result<(), SseError> {
        if self.at_start {
            self.at_start = false;
            let head = std::mem::take(&mut self.head);
            self.process(&head, on_event)?;
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, self.fed, on_event)?;
        }
        self.dispatch(self.fed, on_event);
        Ok(())
    }

    /// Splits `bytes` into lines; the unterminated tail is kept in `self.line`.
    fn process<F: FnMut(Block<'_>)>(
        &mut self,
        mut bytes: &[u8],
        on_event: &mut F,
    ) -> Result<(), SseError> {
        if self.skip_lf && !bytes.is_empty() {
            self.skip_lf = false;
            if bytes.first() == Some(&b'\n') {
                bytes = &bytes[1..];
            }
        }
        while let Some(end) = memchr2(b'\r', b'\n', bytes) {
            // Where the line ends, terminator included (a CRLF pair split across chunks: up to the
            // CR; the LF then starts the next chunk and is skipped).
            let after = match (bytes[end], bytes.get(end + 1)) {
                (b'\r', Some(b'\n')) => end + 2,
                (b'\r', None) => {
                    self.skip_lf = true;
                    end + 1
                }
                _ => end + 1,
            };
            let line_end = self.fed - (bytes.len() - after) as u64;
            if self.line.is_empty() {
                self.process_line(&bytes[..end], line_end, on_event)?;
            } else {
                self.check_line(self.line.len() + end)?;
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&bytes[..end]);
                let result = self.process_line(&line, line_end, on_event);
                line.clear();
                self.line = line;
                result?;
            }
            bytes = &bytes[after..];
        }
        if !bytes.is_empty() {
            self.check_line(self.line.len() + bytes.len())?;
            self.line.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn check_line(&self, len: usize) -> Result<(), SseError> {
        if len > self.max_event_bytes {
            return Err(SseError::LineTooLong {
                limit: self.max_event_bytes,
            });
        }
        Ok(())
    }

    /// Interprets one complete line (without its terminator), which ends at `line_end` in the
    /// raw stream.
    fn process_line<F: FnMut(Block<'_>)>(
        &mut self,
        line: &[u8],
        line_end: u64,
        on_event: &mut F,
    ) -> Result<(), SseError> {
        self.check_line(line.len())?;
        match line.first() {
            None => {
                self.dispatch(line_end, on_event);
                return Ok(());
            }
            Some(b':') => return Ok(()),
            Some(_) => {}
        }
        let (field, value) = match memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    return Err(SseError::EventTooLarge {
                        limit: self.max_event_bytes,
                    });
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(&utf8_lossy(value));
            }
            b"id" if memchr(0, value).is_none() => {
                let id = self.last_id.get_or_insert_with(String::new);
                id.clear();
                id.push_str(&utf8_lossy(value));
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // All ASCII digits, so valid UTF-8; too large a number is ignored.
                if let Some(retry) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|text| text.parse().ok())
                {
                    self.retry = Some(retry);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The blank-line rule: dispatch the pending event, if it has data, and reset the block,
    /// which ends at `end` in the raw stream.
    fn dispatch<F: FnMut(Block<'_>)>(&mut self, end: u64, on_block: &mut F) {
        let event = self.data.split_last().map(|(_, data)| EventRef {
            event: if self.event_type.is_empty() {
                "message"
            } else {
                &self.event_type
            },
            data: utf8_lossy(data),
            id: self.last_id.as_deref(),
            retry: self.retry,
        });
        on_block(Block { event, end });
        self.data.clear();
        self.data.shrink_to(KEEP_CAPACITY);
        self.line.shrink_to(KEEP_CAPACITY);
        self.event_type.clear();
        self.retry = None;
    }
}

/// `bytes` as UTF-8, invalid sequences replaced: `String::from_utf8_lossy`, through the faster
/// validation of `str::from_utf8` first (event data is nearly always valid).
fn utf8_lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: &str, data: &str, id: Option<&str>, retry: Option<u64>) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
            id: id.map(str::to_owned),
            retry,
        }
    }

    fn msg(data: &str) -> SseEvent {
        event("message", data, None, None)
    }

    /// Feeds the whole input, then finishes; returns (events from feed, events from finish).
    fn parse(input: &[u8]) -> (Vec<SseEvent>, Vec<SseEvent>) {
        let mut parser = SseParser::default();
        let fed = parser.feed(input).unwrap_or_default();
        let finished = parser.finish().unwrap_or_default();
        (fed, finished)
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let (events, rest) = parse(b"data: YHOO\ndata: +2\ndata: 10\n\n");
        assert_eq!(events, vec![msg("YHOO\n+2\n10")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn spec_example_with_comment_and_ids() {
        let input = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n";
        let (events, rest) = parse(input);
        assert_eq!(
            events,
            vec![
                event("message", "first event", Some("1"), None),
                event("message", "second event", Some(""), None),
            ]
        );
        // Unterminated final event: dispatched by finish (lenient end of stream).
        assert_eq!(rest, vec![event("message", " third event", Some(""), None)]);
    }

    #[test]
    fn empty_data_fields() {
        let (events, rest) = parse(b"data\n\ndata\ndata\n\ndata:");
        assert_eq!(events, vec![msg(""), msg("\n")]);
        assert_eq!(rest, vec![msg("")]);
    }

    #[test]
    fn one_space_after_colon_is_stripped() {
        let (events, _) = parse(b"data:test\n\ndata: test\n\ndata:  test\n\n");
        assert_eq!(events, vec![msg("test"), msg("test"), msg(" test")]);
    }

    #[test]
    fn line_endings_lf_cr_crlf() {
        for input in [
            &b"event: a\ndata: x\n\n"[..],
            b"event: a\rdata: x\r\r",
            b"event: a\r\ndata: x\r\n\r\n",
            b"event: a\r\ndata: x\n\r",
        ] {
            let (events, rest) = parse(input);
            assert_eq!(events, vec![event("a", "x", None, None)], "{input:?}");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_ending() {
        let mut parser = SseParser::default();
        let mut events = parser.feed(b"data: a\r").unwrap_or_default();
        events.extend(parser.feed(b"\n").unwrap_or_default());
        events.extend(parser.feed(b"\r").unwrap_or_default());
        events.extend(parser.feed(b"\n").unwrap_or_default());
        assert_eq!(events, vec![msg("a")]);
    }

    #[test]
    fn utf8_split_inside_sequence() {
        let input = "data: héllo 你好 🚀\n\n".as_bytes();
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for byte in input {
            events.extend(parser.feed(std::slice::from_ref(byte)).unwrap_or_default());
        }
        assert_eq!(events, vec![msg("héllo 你好 🚀")]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let (events, _) = parse(b"data: a\xffb\n\n");
        assert_eq!(events, vec![msg("a\u{fffd}b")]);
    }

    #[test]
    fn leading_bom_is_stripped_once() {
        let (events, _) = parse(b"\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n");
        // The second BOM is part of a field name, which is then unknown: no second event.
        assert_eq!(events, vec![msg("a")]);
        let mut parser = SseParser::default();
        let mut split = Vec::new();
        for part in [&b"\xEF"[..], b"\xBB", b"\xBFdata: a\n\n"] {
            split.extend(parser.feed(part).unwrap_or_default());
        }
        assert_eq!(split, vec![msg("a")]);
    }

    #[test]
    fn id_persists_and_retry_belongs_to_its_block() {
        let (events, _) =
            parse(b"id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nretry: x1\ndata: c\n\n");
        assert_eq!(
            events,
            vec![
                event("message", "a", Some("7"), Some(1500)),
                event("message", "b", Some("7"), None),
                event("message", "c", Some("7"), None),
            ]
        );
    }

    #[test]
    fn id_with_nul_is_ignored_and_unknown_fields_too() {
        let (events, _) = parse(b"id: 1\n\nid: a\0b\nfoo: bar\ndata: x\n\n");
        assert_eq!(events, vec![event("message", "x", Some("1"), None)]);
    }

    #[test]
    fn block_without_data_resets_event_type() {
        let (events, _) = parse(b"event: ping\n\ndata: x\n\n");
        assert_eq!(events, vec![msg("x")]);
    }

    #[test]
    fn oversize_line_is_an_error_and_sticky() {
        let mut parser = SseParser::new(16);
        assert_eq!(parser.feed(b"data: 0123456789"), Ok(vec![]));
        assert_eq!(
            parser.feed(b"abcdef"),
            Err(SseError::LineTooLong { limit: 16 })
        );
        assert_eq!(
            parser.feed(b"\n\n"),
            Err(SseError::LineTooLong { limit: 16 })
        );
    }

    #[test]
    fn oversize_event_is_an_error() {
        let mut parser = SseParser::new(16);
        assert_eq!(
            parser.feed(b"data: x\n\ndata: 01234567\ndata: 01234567\n\n"),
            Ok(vec![msg("x")])
        );
        assert_eq!(parser.feed(b""), Err(SseError::EventTooLarge { limit: 16 }));
    }

    #[test]
    fn default_bound_matches_the_python_signature() {
        // `py/sse.rs` spells the default out as 1048576 for the Python text signature.
        assert_eq!(DEFAULT_MAX_EVENT_BYTES, 1_048_576);
    }

    #[test]
    fn block_ends_are_raw_stream_offsets() {
        let input = b"\xEF\xBB\xBFdata: a\r\n\r\n: c\n\ndata: b\r\rdata: c\n";
        let mut whole = Vec::new();
        let mut parser = SseParser::default();
        parser
            .feed_blocks(input, |block| {
                whole.push((block.event.map(|e| e.data.into_owned()), block.end));
            })
            .unwrap_or_default();
        let expected = vec![
            (Some("a".to_owned()), 14),
            (None, 19),
            (Some("b".to_owned()), 28),
        ];
        assert_eq!(whole, expected);
        for cut in 0..=input.len() {
            let mut split = Vec::new();
            let mut parser = SseParser::default();
            for part in [&input[..cut], &input[cut..]] {
                parser
                    .feed_blocks(part, |block| {
                        split.push((block.event.map(|e| e.data.into_owned()), block.end));
                    })
                    .unwrap_or_default();
            }
            // A CRLF split after its CR ends the block at the CR.
            let mut expected = expected.clone();
            if cut == 13 {
                expected[0].1 = 13;
            }
            assert_eq!(split, expected, "cut at {cut}");
        }
    }

    #[test]
    fn comments_are_not_bounded_by_event_size_over_time() {
        let mut parser = SseParser::new(16);
        for _ in 0..100 {
            assert_eq!(parser.feed(b": keep-alive\n"), Ok(vec![]));
        }
        assert_eq!(parser.feed(b"data: ok\n\n"), Ok(vec![msg("ok")]));
    }
}
