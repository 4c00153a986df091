//! Fuzzing the chat stream meter and its chunk reader (upstream bytes): well-formed chunks are
//! metered exactly as a reference reading says; type-confused, deeply nested, oversized or
//! non-UTF-8 chunks are counted as malformed, never fatal; and every split of a stream meters
//! the same.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use _core::error::SseError;
use _core::sse::{ChatStreamMeter, Usage};
use _core::tokens::Encoding;
use common::{arb_cuts, arb_json, arb_text, config, nested, split_at};
use proptest::prelude::*;
use serde_json::{json, Value};

/// One well-formed `chat.completion.chunk`, and what the meter must read from it.
#[derive(Debug, Clone)]
struct Chunk {
    model: Option<String>,
    content: Vec<Option<String>>,
    reasoning: Option<String>,
    tool: Option<(Option<String>, Option<String>)>,
    usage: Option<Usage>,
    error: Option<Value>,
}

impl Chunk {
    fn json(&self) -> Value {
        let choices: Vec<Value> = self
            .content
            .iter()
            .enumerate()
            .map(|(index, content)| {
                let mut delta = json!({"role": "assistant", "content": content, "refusal": null});
                if index == 0 {
                    delta["reasoning_content"] = json!(self.reasoning);
                    if let Some((name, arguments)) = &self.tool {
                        delta["tool_calls"] = json!([{"index": 0, "id": "call_1", "type": "function",
                            "function": {"name": name, "arguments": arguments}}]);
                    }
                }
                json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": null})
            })
            .collect();
        let usage = self.usage.map(|u| {
            json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                "total_tokens": 0, "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
                "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}})
        });
        let mut chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
            "model": self.model, "choices": choices, "usage": usage});
        if let Some(error) = &self.error {
            chunk["error"] = error.clone();
        }
        chunk
    }

    /// The delta text in the order the meter appends it: stream order, so the walk follows the
    /// serialized object's key order.
    fn text(&self) -> String {
        let mut text = String::new();
        let push = |text: &mut String, value: &Value| text.push_str(value.as_str().unwrap_or(""));
        for choice in self.json()["choices"].as_array().unwrap() {
            for (key, value) in choice["delta"].as_object().unwrap() {
                match key.as_str() {
                    "content" | "reasoning_content" => push(&mut text, value),
                    "tool_calls" => {
                        for call in value.as_array().unwrap() {
                            for (key, value) in call["function"].as_object().unwrap() {
                                if key == "name" || key == "arguments" {
                                    push(&mut text, value);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        text
    }
}

fn arb_usage() -> impl Strategy<Value = Usage> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(p, c, cached, r)| Usage {
        prompt_tokens: p,
        completion_tokens: c,
        cached_tokens: cached,
        reasoning_tokens: r,
    })
}

fn arb_chunk() -> impl Strategy<Value = Chunk> {
    (
        prop::option::of(arb_text()),
        prop::collection::vec(prop::option::of(arb_text()), 0..3),
        prop::option::of(arb_text()),
        prop::option::of((prop::option::of(arb_text()), prop::option::of(arb_text()))),
        prop::option::weighted(0.2, arb_usage()),
        prop::option::weighted(0.1, arb_json(2).prop_filter("not null", |v| !v.is_null())),
    )
        .prop_map(|(model, content, reasoning, tool, usage, error)| Chunk {
            model,
            content,
            reasoning,
            tool,
            usage,
            error,
        })
}

/// How a chunk's event is written: line endings, a space after `data:` or not, comments.
fn frame(data: &str, style: u8) -> String {
    let eol = ["\n", "\r\n", "\r"][usize::from(style % 3)];
    let colon = if style & 4 == 0 { "data: " } else { "data:" };
    let comment = if style & 8 == 0 { "" } else { ": keep-alive" };
    if comment.is_empty() {
        format!("{colon}{data}{eol}{eol}")
    } else {
        format!("{comment}{eol}{colon}{data}{eol}{eol}")
    }
}

fn meter(chunks: &[&[u8]]) -> (ChatStreamMeter, Result<(), SseError>) {
    let mut meter = ChatStreamMeter::new(Encoding::O200kBase);
    for chunk in chunks {
        if let Err(error) = meter.feed(chunk) {
            return (meter, Err(error));
        }
    }
    let result = meter.finish();
    (meter, result)
}

/// Everything the meter exposes, for comparing two runs.
/// usage, model, done, error, completion text, malformed count.
type MeterState = (
    Option<Usage>,
    Option<String>,
    bool,
    Option<String>,
    String,
    u64,
);

fn state(meter: &ChatStreamMeter) -> MeterState {
    (
        meter.usage(),
        meter.model().map(str::to_owned),
        meter.done(),
        meter.error().map(str::to_owned),
        meter.completion_text().to_owned(),
        meter.malformed_events(),
    )
}

/// A hostile event's data: any JSON (often chunk-shaped but with the wrong types), or garbage.
fn arb_hostile_data() -> impl Strategy<Value = Vec<u8>> {
    let confused = (arb_json(3), arb_json(3), arb_json(3), arb_json(2)).prop_map(|(content, calls, usage, model)| {
        json!({"model": model, "usage": usage, "choices": [{"delta": {"content": content, "tool_calls": calls}}]})
    });
    prop_oneof![
        3 => confused.prop_map(|value| serde_json::to_vec(&value).unwrap()),
        2 => arb_json(4).prop_map(|value| serde_json::to_vec(&value).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|mut bytes| {
            bytes.retain(|&b| b != b'\n' && b != b'\r');
            bytes
        }),
        1 => Just(b"[DONE]".to_vec()),
        1 => Just(b"{\"choices\":[{\"delta\":{\"content\":\"a\xffb\"}}]}".to_vec()),
    ]
}

proptest! {
    #![proptest_config(config(384))]

    /// Well-formed chunks, framed any way and split anywhere: the meter reads the last usage,
    /// the first non-empty model, the last error (raw) and the whole delta text, and nothing
    /// is malformed.
    #[test]
    fn well_formed_streams_meter_exactly(
        chunks in prop::collection::vec((arb_chunk(), any::<u8>()), 0..8),
        done in any::<bool>(),
        seed in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut stream = String::new();
        for (chunk, style) in &chunks {
            stream.push_str(&frame(&serde_json::to_string(&chunk.json()).unwrap(), *style));
        }
        if done {
            stream.push_str("data: [DONE]\n\n");
        }
        let mut cuts: Vec<usize> = seed.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let (meter, result) = meter(&split_at(stream.as_bytes(), &cuts));
        prop_assert_eq!(result, Ok(()));
        let expected_text: String = chunks.iter().map(|(chunk, _)| chunk.text()).collect();
        prop_assert_eq!(meter.completion_text(), expected_text.as_str());
        prop_assert_eq!(meter.usage(), chunks.iter().rev().find_map(|(chunk, _)| chunk.usage));
        let model = chunks.iter().find_map(|(chunk, _)| chunk.model.clone().filter(|m| !m.is_empty()));
        prop_assert_eq!(meter.model().map(str::to_owned), model);
        let error = chunks.iter().rev().find_map(|(chunk, _)| chunk.error.as_ref().map(|e| e.to_string()));
        prop_assert_eq!(meter.error().map(str::to_owned), error);
        prop_assert_eq!(meter.done(), done);
        prop_assert_eq!(meter.malformed_events(), 0);
        prop_assert_eq!(meter.count_completion_tokens(), Encoding::O200kBase.count(&expected_text));
    }

    /// Hostile events mixed with good ones: never an error (the events are small), never a
    /// panic, at most one malformed count per event, and every split meters the same.
    #[test]
    fn hostile_streams_meter_the_same_whatever_the_split(
        events in prop::collection::vec(prop_oneof![
            3 => arb_hostile_data(),
            1 => arb_chunk().prop_map(|chunk| serde_json::to_vec(&chunk.json()).unwrap()),
        ], 0..8),
        seed in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut stream = Vec::new();
        for data in &events {
            stream.extend_from_slice(b"data: ");
            stream.extend_from_slice(data);
            stream.extend_from_slice(b"\n\n");
        }
        let (whole, result) = meter(&[&stream]);
        prop_assert_eq!(result, Ok(()));
        prop_assert!(whole.malformed_events() <= events.len() as u64);
        let mut cuts: Vec<usize> = seed.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let (split, result) = meter(&split_at(&stream, &cuts));
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(state(&split), state(&whole));
    }

    /// Any bytes at all: the meter only ever fails with a typed bound error.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), cuts in arb_cuts(512)) {
        let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= bytes.len()).collect();
        let mut meter = ChatStreamMeter::with_max_event_bytes(Encoding::Cl100kBase, 64);
        for chunk in split_at(&bytes, &cuts) {
            if let Err(error) = meter.feed(chunk) {
                let typed = matches!(error, SseError::LineTooLong { .. } | SseError::EventTooLarge { .. });
                prop_assert!(typed, "{:?}", error);
                break;
            }
        }
        let _ = meter.count_completion_tokens();
    }
}

#[test]
fn deeply_nested_chunks_are_malformed_not_a_crash() {
    for depth in [200, 10_000, 100_000] {
        let inner = nested(depth, "\"x\"");
        let events = [
            inner.clone(),
            format!(r#"{{"choices":{inner}}}"#),
            format!(r#"{{"choices":[{{"delta":{{"content":{inner}}}}}]}}"#),
            format!(r#"{{"usage":{{"prompt_tokens":{inner}}}}}"#),
        ];
        let mut stream = String::new();
        for event in &events {
            stream.push_str(&format!("data: {event}\n\n"));
        }
        let mut meter = ChatStreamMeter::with_max_event_bytes(Encoding::O200kBase, 1 << 20);
        assert_eq!(meter.feed(stream.as_bytes()), Ok(()), "depth {depth}");
        assert_eq!(meter.finish(), Ok(()));
        assert_eq!(meter.malformed_events(), 4, "depth {depth}");
        assert_eq!(meter.completion_text(), "");
    }
}

#[test]
fn nesting_in_skipped_fields_does_not_recurse() {
    // `logprobs` and unknown fields are skipped; a 100,000-deep value there does not overflow.
    let deep = nested(100_000, "1");
    let stream = format!(
        "data: {{\"logprobs\":{deep},\"choices\":[{{\"delta\":{{\"content\":\"ok\",\"x\":{deep}}}}}]}}\n\n"
    );
    let (meter, result) = meter(&[stream.as_bytes()]);
    assert_eq!(result, Ok(()));
    assert_eq!(meter.completion_text(), "ok");
}

#[test]
fn out_of_range_usage_is_malformed_and_keeps_the_last_good_one() {
    let stream = concat!(
        "data: {\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\n",
        "data: {\"usage\":{\"prompt_tokens\":-1}}\n\n",
        "data: {\"usage\":{\"prompt_tokens\":18446744073709551616}}\n\n",
        "data: {\"usage\":{\"prompt_tokens\":1.5}}\n\n",
        "data: {\"usage\":{\"prompt_tokens\":\"9\"}}\n\n",
        "data: {\"usage\":[1,2]}\n\n",
    );
    let (meter, result) = meter(&[stream.as_bytes()]);
    assert_eq!(result, Ok(()));
    assert_eq!(meter.malformed_events(), 5);
    let usage = meter.usage().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (5, 7));
}

#[test]
fn an_oversized_event_is_a_typed_error_and_keeps_what_came_before() {
    let mut meter = ChatStreamMeter::with_max_event_bytes(Encoding::O200kBase, 4096);
    let good = "data: {\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
    assert_eq!(meter.feed(good.as_bytes()), Ok(()));
    let huge = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
        "x".repeat(10_000)
    );
    assert_eq!(
        meter.feed(huge.as_bytes()),
        Err(SseError::LineTooLong { limit: 4096 })
    );
    assert_eq!(
        meter.feed(good.as_bytes()),
        Err(SseError::LineTooLong { limit: 4096 })
    );
    assert_eq!(meter.completion_text(), "hi");
    assert_eq!(meter.model(), Some("m"));
}
