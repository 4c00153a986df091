//! Shared by the `fuzz_*` integration tests: the proptest configuration (case count from
//! `PROPTEST_CASES`, which `make fuzz` raises) and generators of hostile JSON.
#![allow(dead_code)]

use proptest::prelude::*;
use serde_json::{Map, Value};

/// A proptest configuration running `default` cases, or `PROPTEST_CASES` when it is set.
/// A failure is not persisted: add its minimal input as a plain `#[test]` instead.
pub fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        max_shrink_iters: 2_000,
        // A failure prints its minimal input; nothing is written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Field names the gateway's parsers look for, so generated objects hit them often.
pub const KNOWN_KEYS: &[&str] = &[
    "messages",
    "role",
    "content",
    "name",
    "tool_call_id",
    "tool_calls",
    "function",
    "arguments",
    "type",
    "text",
    "model",
    "choices",
    "delta",
    "reasoning_content",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "completion_tokens_details",
    "reasoning_tokens",
    "error",
];

/// Strings that are hostile or meaningful: empty, escapes, controls, non-ASCII, special tokens.
pub fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ".{0,24}",
        1 => Just(String::new()),
        1 => prop::sample::select(vec![
            "text", "user", "assistant", "function", "image_url", "[DONE]", "<|endoftext|>",
            "\u{0}\u{1f}\"\\\n\r\t", "\u{2028}\u{2029}\u{feff}", "é中文🚀", "data: x\n\n",
        ])
        .prop_map(str::to_owned),
        1 => "[ \\t\\r\\n]{0,40}",
    ]
}

/// An object key: one the parsers know, or any string.
pub fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KNOWN_KEYS).prop_map(str::to_owned),
        1 => arb_text(),
    ]
}

/// A JSON scalar of any type, with extreme numbers.
pub fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![0i64, -1, 1, i64::MIN, i64::MAX]).prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        arb_text().prop_map(Value::String),
    ]
}

/// Any JSON value, nested up to `depth` levels, biased towards the keys the parsers read.
pub fn arb_json(depth: u32) -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(depth, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `value` nested `depth` times in single-element arrays: `[[[...value...]]]`.
pub fn nested(depth: usize, value: &str) -> String {
    format!("{}{value}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Sorted cut positions within `len`, for splitting a stream into chunks.
pub fn arb_cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=len, 0..16).prop_map(|mut cuts| {
        cuts.sort_unstable();
        cuts
    })
}

/// `input` cut at `cuts` (sorted positions) into consecutive chunks.
pub fn split_at<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts {
        chunks.push(&input[start..cut]);
        start = cut;
    }
    chunks.push(&input[start..]);
    chunks
}
