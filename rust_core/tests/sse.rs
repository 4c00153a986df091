//! SSE parser and chat stream meter: every split of a stream gives the same result as the
//! whole stream (every 2- and 3-way split of samples, and random splits with proptest).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use _core::error::SseError;
use _core::sse::{ChatStreamMeter, SseEvent, SseParser};
use _core::tokens::Encoding;
use proptest::prelude::*;

/// A realistic OpenAI chat.completion.chunk stream with a final usage chunk and `[DONE]`.
const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732540000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732540000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Bonjour\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732540000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" le monde, ça va ? 你好 🚀\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732540000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1732540000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":12,\"total_tokens\":31,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n",
    "data: [DONE]\n\n",
);

/// Streams exercising the parser's corners.
const SAMPLES: &[&[u8]] = &[
    OPENAI_STREAM.as_bytes(),
    b"data: YHOO\ndata: +2\ndata: 10\n\n",
    b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n",
    b"data\n\ndata\ndata\n\ndata:",
    b"\xEF\xBB\xBFevent: add\r\ndata: 73857293\r\nretry: 2500\r\n\r\nevent: remove\rdata: 2153\r\revent: add\ndata: 113411\n\n",
    "id: 42\ndata: h\u{e9}llo \u{4f60}\u{597d} \u{1f680}\r\n: comment \u{e9}\r\n\r\ndata: tail".as_bytes(),
    b"\r\n\r\n\n\rdata: a\r\r\n\n",
];

fn parse_chunks(chunks: &[&[u8]], max: usize) -> (Vec<SseEvent>, Option<SseError>) {
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

fn parse_at(input: &[u8], cuts: &[usize], max: usize) -> (Vec<SseEvent>, Option<SseError>) {
    let mut chunks = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        chunks.push(&input[start..cut]);
        start = cut;
    }
    chunks.push(&input[start..]);
    parse_chunks(&chunks, max)
}

#[test]
fn openai_stream_events() {
    let (events, error) = parse_chunks(&[OPENAI_STREAM.as_bytes()], 1 << 20);
    assert_eq!(error, None);
    assert_eq!(events.len(), 6);
    assert!(events.iter().all(|event| event.event == "message"));
    assert_eq!(events[5].data, "[DONE]");
}

#[test]
fn every_two_and_three_way_split_gives_the_same_events() {
    for (index, input) in SAMPLES.iter().enumerate() {
        let whole = parse_chunks(&[input], 1 << 20);
        assert!(whole.1.is_none());
        for a in 0..=input.len() {
            assert_eq!(
                parse_at(input, &[a], 1 << 20),
                whole,
                "sample {index}, cut {a}"
            );
        }
        // Three-way splits: every pair on the short samples, a stride on the long one.
        let step = if input.len() > 200 { 7 } else { 1 };
        for a in (0..=input.len()).step_by(step) {
            for b in a..=input.len() {
                assert_eq!(
                    parse_at(input, &[a, b], 1 << 20),
                    whole,
                    "sample {index}, cuts {a} {b}"
                );
            }
        }
    }
}

#[test]
fn byte_by_byte_feeding_gives_the_same_events() {
    for input in SAMPLES {
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            parse_at(input, &cuts, 1 << 20),
            parse_chunks(&[input], 1 << 20)
        );
    }
}

#[test]
fn bound_errors_do_not_depend_on_splits() {
    for max in [8, 40, 300] {
        for input in SAMPLES {
            let whole = parse_chunks(&[input], max);
            for a in 0..=input.len() {
                assert_eq!(parse_at(input, &[a], max), whole, "max {max}, cut {a}");
            }
        }
    }
}

fn meter_chunks(input: &[u8], cuts: &[usize]) -> ChatStreamMeter {
    let mut meter = ChatStreamMeter::new(Encoding::O200kBase);
    let mut start = 0;
    for &cut in cuts {
        meter.feed(&input[start..cut]).unwrap();
        start = cut;
    }
    meter.feed(&input[start..]).unwrap();
    meter.finish().unwrap();
    meter
}

#[test]
fn meter_reads_the_openai_stream() {
    let meter = meter_chunks(OPENAI_STREAM.as_bytes(), &[]);
    let usage = meter.usage().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (19, 12));
    assert_eq!(meter.model(), Some("gpt-4o-mini-2024-07-18"));
    assert!(meter.done());
    assert_eq!(meter.completion_text(), "Bonjour le monde, ça va ? 你好 🚀");
    assert_eq!(
        meter.count_completion_tokens(),
        Encoding::O200kBase.count("Bonjour le monde, ça va ? 你好 🚀")
    );
}

/// Sorted, deduplicated cut positions within `len`.
fn cuts_strategy(len: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..=len, 0..12).prop_map(|mut cuts| {
        cuts.sort_unstable();
        cuts
    })
}

proptest! {
    #[test]
    fn random_splits_give_the_same_events(
        (index, cuts) in (0..SAMPLES.len()).prop_flat_map(|i| (Just(i), cuts_strategy(SAMPLES[i].len())))
    ) {
        let input = SAMPLES[index];
        prop_assert_eq!(parse_at(input, &cuts, 1 << 20), parse_chunks(&[input], 1 << 20));
    }

    #[test]
    fn random_streams_split_randomly_give_the_same_events(
        input in proptest::collection::vec(
            prop_oneof![
                Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(0xEF_u8), Just(0xBB_u8),
                Just(0xBF_u8), Just(b'd'), Just(b'a'), Just(b't'), Just(b'i'), any::<u8>(),
            ],
            0..200,
        ),
        seed in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = seed.iter().map(|index| index.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(parse_at(&input, &cuts, 64), parse_chunks(&[&input], 64));
    }

    #[test]
    fn meter_is_split_invariant(cuts in cuts_strategy(OPENAI_STREAM.len())) {
        let whole = meter_chunks(OPENAI_STREAM.as_bytes(), &[]);
        let split = meter_chunks(OPENAI_STREAM.as_bytes(), &cuts);
        prop_assert_eq!(split.usage(), whole.usage());
        prop_assert_eq!(split.model(), whole.model());
        prop_assert_eq!(split.completion_text(), whole.completion_text());
        prop_assert_eq!(split.done(), whole.done());
    }
}
