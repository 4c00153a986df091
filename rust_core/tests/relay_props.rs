//! Properties of the stream relay, for every pair: the output is the same however the input is
//! split into chunks, and a translated stream reassembles (text, reasoning, tool call ids, names
//! and arguments, finish reason, usage) to what the source stream says, for generated answers
//! whose text holds any character.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod relay_support;

use _core::relay::Protocol;
use proptest::prelude::*;
use relay_support::{anthropic_stream, openai_stream, read, relay, run, split, Answer};
use serde_json::json;

const PAIRS: [(Protocol, Protocol); 8] = [
    (Protocol::OpenAiChat, Protocol::OpenAiChat),
    (Protocol::OpenAiChat, Protocol::AnthropicMessages),
    (Protocol::OpenAiChat, Protocol::OpenAiResponses),
    (Protocol::AnthropicMessages, Protocol::AnthropicMessages),
    (Protocol::AnthropicMessages, Protocol::OpenAiChat),
    (Protocol::AnthropicMessages, Protocol::OpenAiResponses),
    (Protocol::OpenAiResponses, Protocol::OpenAiResponses),
    (Protocol::OpenAiChat, Protocol::OpenAiChat),
];

/// The sample stream of `source` (for Responses: a translated OpenAI stream), with CRLF line
/// ends when `crlf`.
fn sample(source: Protocol, crlf: bool) -> String {
    let stream = match source {
        Protocol::OpenAiChat => openai_stream(3),
        Protocol::AnthropicMessages => anthropic_stream(3),
        Protocol::OpenAiResponses => {
            let mut relay = relay(Protocol::OpenAiChat, Protocol::OpenAiResponses, false);
            String::from_utf8(run(&mut relay, &[openai_stream(3).as_bytes()])).unwrap()
        }
    };
    if crlf {
        stream.replace('\n', "\r\n")
    } else {
        stream
    }
}

/// A generated answer: what the upstream says.
#[derive(Debug, Clone)]
struct Spec {
    reasoning: Vec<String>,
    text: Vec<String>,
    /// `(id, name, argument fragments)`.
    tools: Vec<(String, String, Vec<String>)>,
    /// In OpenAI chat's vocabulary.
    finish: &'static str,
    /// `(prompt, completion, cached)`; always sent by an Anthropic upstream.
    usage: Option<(u64, u64, u64)>,
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    let piece = || prop::collection::vec(any::<String>(), 0..4);
    let tool = ("[a-z0-9_]{1,8}", "[a-z_]{1,8}", piece());
    (
        piece(),
        piece(),
        prop::collection::vec(tool, 0..3),
        prop::sample::select(vec!["stop", "length", "tool_calls", "content_filter"]),
        prop::option::of((0..1000u64, 0..1000u64, 0..10u64)),
    )
        .prop_map(|(reasoning, text, tools, finish, usage)| Spec {
            reasoning,
            text,
            tools,
            finish,
            // Cached tokens are part of the prompt tokens.
            usage: usage.map(|(prompt, completion, cached)| (prompt + cached, completion, cached)),
        })
}

fn openai_of(spec: &Spec) -> String {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let body = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {body}\n\n")
    };
    let mut s = chunk(json!({"role": "assistant", "content": ""}), None);
    for piece in &spec.reasoning {
        s += &chunk(json!({ "reasoning_content": piece }), None);
    }
    for piece in &spec.text {
        s += &chunk(json!({ "content": piece }), None);
    }
    for (index, (id, name, fragments)) in spec.tools.iter().enumerate() {
        let call = json!({"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}});
        s += &chunk(json!({ "tool_calls": [call] }), None);
        for fragment in fragments {
            let call = json!({"index": index, "function": {"arguments": fragment}});
            s += &chunk(json!({ "tool_calls": [call] }), None);
        }
    }
    s += &chunk(json!({}), Some(spec.finish));
    if let Some((prompt, completion, cached)) = spec.usage {
        let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}});
        s += &format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-x", "choices": [], "usage": usage})
        );
    }
    s + "data: [DONE]\n\n"
}

fn anthropic_of(spec: &Spec) -> String {
    let event = |data: serde_json::Value| {
        format!(
            "event: {}\ndata: {data}\n\n",
            data["type"].as_str().unwrap()
        )
    };
    let (prompt, completion, cached) = spec.usage.unwrap_or((40, 7, 3));
    let usage = json!({"input_tokens": prompt - cached, "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0, "output_tokens": 1});
    let mut s = event(
        json!({"type": "message_start", "message": {"id": "m", "type": "message",
        "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": usage}}),
    );
    let mut index = 0;
    let mut block = |s: &mut String, start: serde_json::Value, deltas: Vec<serde_json::Value>| {
        *s +=
            &event(json!({"type": "content_block_start", "index": index, "content_block": start}));
        for delta in deltas {
            *s += &event(json!({"type": "content_block_delta", "index": index, "delta": delta}));
        }
        *s += &event(json!({"type": "content_block_stop", "index": index}));
        index += 1;
    };
    if !spec.reasoning.is_empty() {
        let deltas = spec
            .reasoning
            .iter()
            .map(|t| json!({"type": "thinking_delta", "thinking": t}))
            .collect();
        block(
            &mut s,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
            deltas,
        );
    }
    if !spec.text.is_empty() {
        let deltas = spec
            .text
            .iter()
            .map(|t| json!({"type": "text_delta", "text": t}))
            .collect();
        block(&mut s, json!({"type": "text", "text": ""}), deltas);
    }
    for (id, name, fragments) in &spec.tools {
        let deltas = fragments
            .iter()
            .map(|f| json!({"type": "input_json_delta", "partial_json": f}))
            .collect();
        block(
            &mut s,
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            deltas,
        );
    }
    let stop = match spec.finish {
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    };
    s += &event(
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": completion}}),
    );
    s + &event(json!({"type": "message_stop"}))
}

/// What a client of `target` must reassemble from a `source` stream saying `spec`.
fn expected(spec: &Spec, source: Protocol, target: Protocol) -> Answer {
    let tools: Vec<(String, String, String)> = spec
        .tools
        .iter()
        .map(|(id, name, fragments)| {
            let args = fragments.concat();
            // A translation gives a tool_use block without argument deltas `{}`.
            let translated = source == Protocol::AnthropicMessages && target != source;
            let args = if args.is_empty() && translated {
                "{}".to_owned()
            } else {
                args
            };
            (id.clone(), name.clone(), args)
        })
        .collect();
    let chat_to_anthropic = source == Protocol::OpenAiChat && target == Protocol::AnthropicMessages;
    let finish = match (target, spec.finish) {
        (Protocol::OpenAiResponses, "stop" | "tool_calls") if !tools.is_empty() => "tool_calls",
        (Protocol::OpenAiResponses, "stop" | "tool_calls") => "stop",
        // A `stop` after tool calls is Anthropic's `tool_use`.
        (_, "stop") if chat_to_anthropic && !tools.is_empty() => "tool_calls",
        (_, finish) => finish,
    };
    let usage = match (source, spec.usage) {
        (Protocol::AnthropicMessages, None) => Some((40, 7, 3)),
        (_, usage) => usage,
    };
    Answer {
        text: spec.text.concat(),
        // Dropped to Responses, and to Anthropic (a thinking block needs Anthropic's signature).
        reasoning: if target == Protocol::OpenAiResponses || chat_to_anthropic {
            String::new()
        } else {
            spec.reasoning.concat()
        },
        tools,
        finish: Some(finish.to_owned()),
        usage,
        done: true,
        errors: vec![],
    }
}

proptest! {
    #![proptest_config(common::config(64))]

    #[test]
    fn output_is_the_same_under_any_split(
        pair in 0..PAIRS.len(),
        crlf in any::<bool>(),
        include_usage in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let (source, target) = PAIRS[pair];
        let input = sample(source, crlf);
        let whole = run(&mut relay(source, target, include_usage), &[input.as_bytes()]);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let chunks = split(input.as_bytes(), &cuts);
        let mut relay = relay(source, target, include_usage);
        let out = run(&mut relay, &chunks);
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&whole));
        prop_assert!(relay.done());
        if source == target && (include_usage || source != Protocol::OpenAiChat) {
            prop_assert_eq!(String::from_utf8_lossy(&out), input);
        }
    }

    #[test]
    fn translations_reassemble_to_the_source_answer(
        spec in arb_spec(),
        target in prop::sample::select(vec![Protocol::OpenAiChat, Protocol::AnthropicMessages, Protocol::OpenAiResponses]),
        anthropic in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let (source, input) = if anthropic {
            (Protocol::AnthropicMessages, anthropic_of(&spec))
        } else {
            (Protocol::OpenAiChat, openai_of(&spec))
        };
        let cut = cut.index(input.len() + 1);
        let mut relay = relay(source, target, true);
        let out = run(&mut relay, &split(input.as_bytes(), &[cut]));
        let mut answer = read(target, &out);
        let mut want = expected(&spec, source, target);
        if spec.usage.is_none() && source == Protocol::OpenAiChat && target != source {
            // Counted by the relay: the caller's prompt tokens and the completion text's tokens.
            prop_assert!(relay.usage_counted());
            let usage = relay.usage().unwrap();
            prop_assert_eq!(usage.completion_tokens, relay.count_completion_tokens() as u64);
            want.usage = Some((30, usage.completion_tokens, 0));
        }
        if target == source {
            // Passthrough: the client's reader sees the upstream's own stream.
            answer.usage = want.usage;
        }
        prop_assert_eq!(answer, want);
    }
}

/// Pieces of hostile input: events of every protocol, garbage, stray line ends, random bytes.
fn arb_hostile() -> impl Strategy<Value = Vec<u8>> {
    let events: Vec<String> = [
        openai_stream(1),
        anthropic_stream(1),
        sample(Protocol::OpenAiResponses, false),
    ]
    .iter()
    .flat_map(|s| {
        s.split_inclusive("\n\n")
            .map(str::to_owned)
            .collect::<Vec<_>>()
    })
    .collect();
    let piece = prop_oneof![
        prop::sample::select(events).prop_map(String::into_bytes),
        prop::sample::select(vec![
            "data: [DONE]\n\n",
            "data: {}\n\n",
            "data: nope\n\n",
            ": c\n",
            "\r",
            "\n",
            "\r\n",
            "data: {\"error\":\"x\"}\n\n",
            "event: error\ndata: {\"type\":\"error\"}\n\n",
            "\u{feff}",
        ])
        .prop_map(|s: &str| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..24),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// Runs `chunks` through a relay; returns the output and the error that ended it, if any.
fn run_lossy(
    source: Protocol,
    target: Protocol,
    max: usize,
    chunks: &[&[u8]],
) -> (Vec<u8>, Option<String>) {
    let mut config = _core::relay::RelayConfig::new(source, target);
    config.max_event_bytes = max;
    config.include_usage = true;
    let mut relay = _core::relay::StreamRelay::new(config).unwrap();
    let mut out = Vec::new();
    for chunk in chunks {
        match relay.feed(chunk) {
            Ok(_core::relay::Relayed::Unchanged) => out.extend_from_slice(chunk),
            Ok(_core::relay::Relayed::Bytes(bytes)) => out.extend_from_slice(bytes),
            Err(error) => return (out, Some(error.to_string())),
        }
    }
    match relay.finish() {
        Ok(bytes) => out.extend_from_slice(bytes),
        Err(error) => return (out, Some(error.to_string())),
    }
    (out, None)
}

proptest! {
    #![proptest_config(common::config(64))]

    #[test]
    fn hostile_input_is_split_invariant(
        input in arb_hostile(),
        pair in 0..PAIRS.len(),
        small in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let (source, target) = PAIRS[pair];
        let max = if small { 200 } else { 1 << 20 };
        let whole = run_lossy(source, target, max, &[&input]);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let (out, error) = run_lossy(source, target, max, &split(&input, &cuts));
        let failed = error.is_some();
        prop_assert_eq!(error, whole.1);
        let (out, whole) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&whole.0));
        if failed {
            // The LF of a CRLF split from its CR may be lost with the broken stream.
            prop_assert_eq!(out.trim_end_matches(['\r', '\n']), whole.trim_end_matches(['\r', '\n']));
        } else {
            prop_assert_eq!(out, whole);
        }
    }
}
