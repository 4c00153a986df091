//! Fuzzing the SSE parser (upstream bytes): any bytes, split anywhere, give exactly the events
//! of a plain, non-incremental reference reading of the WHATWG rules, or the first typed bound
//! error; the parser never panics, whatever the input size.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use _core::error::SseError;
use _core::sse::{SseEvent, SseParser};
use common::{arb_cuts, config, split_at};
use proptest::prelude::*;

/// The whole stream read at once, line by line, as the spec describes it (plus the parser's
/// lenient end of stream: a pending line and event are kept). Returns the events up to the
/// first bound error, and that error.
fn reference(input: &[u8], max: usize) -> (Vec<SseEvent>, Option<SseError>) {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\n' => {
                lines.push(&input[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&input[start..i]);
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < input.len() {
        lines.push(&input[start..]);
    }
    let mut events = Vec::new();
    let (mut data, mut kind, mut id, mut retry) = (Vec::<u8>::new(), String::new(), None, None);
    for line in lines {
        if line.len() > max {
            return (events, Some(SseError::LineTooLong { limit: max }));
        }
        if line.is_empty() {
            dispatch(&mut events, &mut data, &mut kind, &id, &mut retry);
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if data.len() + value.len() + 1 > max {
                    return (events, Some(SseError::EventTooLarge { limit: max }));
                }
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            b"event" => kind = String::from_utf8_lossy(value).into_owned(),
            b"id" if !value.contains(&0) => id = Some(String::from_utf8_lossy(value).into_owned()),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Ok(ms) = std::str::from_utf8(value).unwrap().parse() {
                    retry = Some(ms);
                }
            }
            _ => {}
        }
    }
    dispatch(&mut events, &mut data, &mut kind, &id, &mut retry);
    (events, None)
}

/// The blank-line rule of the reference: dispatch the pending event, if it has data.
fn dispatch(
    events: &mut Vec<SseEvent>,
    data: &mut Vec<u8>,
    kind: &mut String,
    id: &Option<String>,
    retry: &mut Option<u64>,
) {
    if let Some((_, body)) = data.split_last() {
        events.push(SseEvent {
            event: if kind.is_empty() {
                "message".to_owned()
            } else {
                kind.clone()
            },
            data: String::from_utf8_lossy(body).into_owned(),
            id: id.clone(),
            retry: *retry,
        });
    }
    data.clear();
    kind.clear();
    *retry = None;
}

/// The incremental parser fed `chunks`, then finished; stops at the first error.
fn incremental(chunks: &[&[u8]], max: usize) -> (Vec<SseEvent>, Option<SseError>) {
    let mut parser = SseParser::new(max);
    let mut events = Vec::new();
    for chunk in chunks {
        match parser.feed(chunk) {
            Ok(more) => events.extend(more),
            Err(error) => return (events, Some(error)),
        }
    }
    match parser.finish() {
        Ok(more) => events.extend(more),
        Err(error) => return (events, Some(error)),
    }
    (events, None)
}

/// Bytes that make SSE lines, fields and BOMs often, and any byte (invalid UTF-8 included).
fn arb_stream(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => prop::sample::select(vec![
            &b"\n"[..], b"\r", b"\r\n", b"\n\n", b"data:", b"data: ", b"data", b"event:", b"id:",
            b"id: \x00", b"retry:", b"retry: 1500", b"retry: 99999999999999999999", b":", b": c",
            b"\xEF\xBB\xBF", b"\xEF\xBB", b"\xff", b"\xc3", b"\xa9", b"\xf0\x9f\x9a", b"[DONE]",
            b"{\"choices\":[]}", b" ",
        ])
        .prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 1..8),
        1 => "[a-z0-9 ]{1,12}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..max_len).prop_map(|pieces| pieces.concat())
}

fn stream_and_cuts(max_len: usize) -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    arb_stream(max_len).prop_flat_map(|input| {
        let len = input.len();
        (Just(input), arb_cuts(len))
    })
}

proptest! {
    #![proptest_config(config(512))]

    /// Any stream, split anywhere: the events and the error equal the reference reading.
    #[test]
    fn any_split_gives_the_reference_events((input, cuts) in stream_and_cuts(60)) {
        let chunks = split_at(&input, &cuts);
        prop_assert_eq!(incremental(&chunks, 1 << 20), reference(&input, 1 << 20));
    }

    /// Small bounds: the first bound error comes at the same event, of the same type, whatever
    /// the split.
    #[test]
    fn bound_errors_match_the_reference(
        (input, cuts) in stream_and_cuts(60),
        max in prop::sample::select(vec![1usize, 4, 8, 16, 33, 64]),
    ) {
        let chunks = split_at(&input, &cuts);
        prop_assert_eq!(incremental(&chunks, max), reference(&input, max));
    }

    /// Byte-at-a-time feeding (the worst split) agrees with the reference.
    #[test]
    fn byte_by_byte_gives_the_reference_events(input in arb_stream(40)) {
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(incremental(&chunks, 1 << 20), reference(&input, 1 << 20));
    }

    /// Errors are sticky: once the parser failed, every later call returns the same error.
    #[test]
    fn errors_are_sticky(input in arb_stream(40), more in arb_stream(10)) {
        let mut parser = SseParser::new(8);
        let mut first = None;
        for chunk in input.chunks(5) {
            if let Err(error) = parser.feed(chunk) {
                first = Some(error);
                break;
            }
        }
        if let Some(error) = first {
            prop_assert_eq!(parser.feed(&more), Err(error.clone()));
            prop_assert_eq!(parser.finish(), Err(error));
        }
    }
}

#[test]
fn an_endless_line_is_refused_at_the_bound() {
    // 8 MiB with no line end, in 64 KiB chunks: refused once the line passes 1 MiB.
    let mut parser = SseParser::default();
    let chunk = vec![b'x'; 64 * 1024];
    let mut fed = 0;
    let error = loop {
        match parser.feed(&chunk) {
            Ok(events) => assert!(events.is_empty()),
            Err(error) => break error,
        }
        fed += chunk.len();
        assert!(fed <= 8 << 20, "no error after {fed} bytes");
    };
    assert_eq!(error, SseError::LineTooLong { limit: 1 << 20 });
    assert!(fed <= (1 << 20) + chunk.len());
}

#[test]
fn endless_data_lines_are_refused_at_the_bound() {
    let mut parser = SseParser::new(4096);
    let line = format!("data: {}\n", "y".repeat(1000));
    let mut result = Ok(Vec::new());
    for _ in 0..100 {
        result = parser.feed(line.as_bytes());
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(SseError::EventTooLarge { limit: 4096 }));
}

#[test]
fn many_tiny_events_and_comments_are_all_delivered() {
    let input = ": ping\ndata: a\n\n".repeat(20_000);
    let (events, error) = incremental(&[input.as_bytes()], 1 << 20);
    assert_eq!(error, None);
    assert_eq!(events.len(), 20_000);
    assert!(events.iter().all(|event| event.data == "a"));
}

#[test]
fn invalid_utf8_everywhere_is_replaced_not_fatal() {
    let input = b"event: \xff\xfe\nid: \xc3\ndata: \xf0\x9f\x9a\ndata: \xed\xa0\x80\n\n";
    let (events, error) = incremental(&[input], 1 << 20);
    assert_eq!(error, None);
    assert_eq!(
        events,
        vec![SseEvent {
            event: "\u{fffd}\u{fffd}".to_owned(),
            data: "\u{fffd}\n\u{fffd}\u{fffd}\u{fffd}".to_owned(),
            id: Some("\u{fffd}".to_owned()),
            retry: None,
        }]
    );
    assert_eq!(reference(input, 1 << 20), (events, None));
}
