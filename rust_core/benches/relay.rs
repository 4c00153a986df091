//! The stream relay's throughput, in MB/s of upstream input, on realistic streams (100 content
//! deltas and a tool call), fed one SSE event per chunk as upstreams send them: the three
//! translations and the OpenAI passthrough (beside `ChatStreamMeter`, the meter it replaces),
//! each also guarded (`*_guarded`: every built-in secret rule redacts; the guarded passthrough
//! pair translates OpenAI chat to itself; a guarded Responses passthrough masks in place), and
//! two translations of long streams (`*_long`, 1000 deltas) with and without a guard.
//! Run: `cargo bench -p ferrogate_core --bench relay`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use std::sync::Arc;

use _core::relay::{Protocol, RelayConfig, Relayed, StreamRelay};
use _core::scan::{builtin, Category, Policy, Scanner};
use _core::sse::ChatStreamMeter;
use _core::tokens::Encoding;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const DELTAS: usize = 100;
/// Deltas of the long streams (some 13 KB of text: more than a guard holds back).
const LONG_DELTAS: usize = 1000;
const ARGS: [&str; 3] = [r#"{\"city\":"#, r#"\"Paris\","#, r#"\"unit\":\"c\"}"#];

fn openai_stream(deltas: usize) -> String {
    let head = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf","choices":["#;
    let chunk = |choice: &str| format!("data: {head}{choice}],\"usage\":null}}\n\n");
    let mut s = chunk(
        r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
    );
    for i in 0..deltas {
        s += &chunk(&format!(
            r#"{{"index":0,"delta":{{"content":" token{i} \u00e9\n"}},"logprobs":null,"finish_reason":null}}"#
        ));
    }
    s += &chunk(
        r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}"#,
    );
    for part in ARGS {
        s += &chunk(&format!(
            r#"{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"{part}"}}}}]}},"logprobs":null,"finish_reason":null}}"#
        ));
    }
    s += &chunk(r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}"#);
    s += &format!("data: {head}],\"usage\":{{\"prompt_tokens\":30,\"completion_tokens\":320,\"total_tokens\":350,\"prompt_tokens_details\":{{\"cached_tokens\":0,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0}}}}}}\n\n");
    s + "data: [DONE]\n\n"
}

fn anthropic_stream(deltas: usize) -> String {
    let event = |kind: &str, data: &str| format!("event: {kind}\ndata: {data}\n\n");
    let mut s = event(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":30,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
    );
    s += &event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    s += &event("ping", r#"{"type": "ping"}"#);
    for i in 0..deltas {
        s += &event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":" token{i} \u00e9\n"}}}}"#
            ),
        );
    }
    s += &event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    );
    s += &event(
        "content_block_start",
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
    );
    for part in ARGS {
        s += &event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":1,"delta":{{"type":"input_json_delta","partial_json":"{part}"}}}}"#
            ),
        );
    }
    s += &event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":1}"#,
    );
    s += &event(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":320}}"#,
    );
    s + &event("message_stop", r#"{"type":"message_stop"}"#)
}

fn relay(source: Protocol, target: Protocol, guard: Option<&Policy>) -> StreamRelay {
    let mut config = RelayConfig::new(source, target);
    config.request_id = "9f1c2a7e-4b1d-4c1e-9a57-3c2b8e1f0d42".to_owned();
    config.model = "gpt-4o".to_owned();
    config.created = 1_741_570_283;
    config.include_usage = true;
    match guard {
        Some(policy) => StreamRelay::with_guard(config, policy.clone()).unwrap(),
        None => StreamRelay::new(config).unwrap(),
    }
}

/// The built-in rules, the secret rules redacting and the others off.
fn secrets_policy() -> Policy {
    let scanner = Arc::new(Scanner::new(builtin::rules()).unwrap());
    let actions = (0..scanner.len())
        .map(|rule| u8::from(scanner.category(rule) == Category::Secret) * 2)
        .collect();
    Policy::new(scanner, actions).unwrap()
}

fn bench_relay(c: &mut Criterion) {
    let openai = openai_stream(DELTAS);
    let anthropic = anthropic_stream(DELTAS);
    let openai_long = openai_stream(LONG_DELTAS);
    let anthropic_long = anthropic_stream(LONG_DELTAS);
    let responses = {
        let mut relay = relay(Protocol::OpenAiChat, Protocol::OpenAiResponses, None);
        let mut out = relay
            .feed(openai.as_bytes())
            .unwrap()
            .bytes()
            .unwrap()
            .to_vec();
        out.extend_from_slice(relay.finish().unwrap());
        String::from_utf8(out).unwrap()
    };
    let cases = [
        (
            "anthropic_to_openai_chat",
            Protocol::AnthropicMessages,
            Protocol::OpenAiChat,
            &anthropic,
        ),
        (
            "openai_chat_to_anthropic",
            Protocol::OpenAiChat,
            Protocol::AnthropicMessages,
            &openai,
        ),
        (
            "openai_chat_to_responses",
            Protocol::OpenAiChat,
            Protocol::OpenAiResponses,
            &openai,
        ),
        (
            "openai_chat_passthrough",
            Protocol::OpenAiChat,
            Protocol::OpenAiChat,
            &openai,
        ),
        (
            "openai_responses_passthrough",
            Protocol::OpenAiResponses,
            Protocol::OpenAiResponses,
            &responses,
        ),
        (
            "anthropic_to_openai_chat_long",
            Protocol::AnthropicMessages,
            Protocol::OpenAiChat,
            &anthropic_long,
        ),
        (
            "openai_chat_to_anthropic_long",
            Protocol::OpenAiChat,
            Protocol::AnthropicMessages,
            &openai_long,
        ),
    ];
    let policy = secrets_policy();
    let guards = [("", None), ("_guarded", Some(&policy))];
    for ((name, source, target, input), (suffix, guard)) in cases
        .into_iter()
        .flat_map(|case| guards.map(|guard| (case, guard)))
    {
        let events: Vec<&[u8]> = input.split_inclusive("\n\n").map(str::as_bytes).collect();
        let mut group = c.benchmark_group("relay");
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(format!("{name}{suffix}"), |b| {
            b.iter(|| {
                let mut relay = relay(source, target, guard);
                let mut sent = 0;
                for event in &events {
                    sent += match relay.feed(black_box(event)).unwrap() {
                        Relayed::Unchanged => event.len(),
                        Relayed::Bytes(bytes) => bytes.len(),
                    };
                }
                sent + relay.finish().unwrap().len()
            })
        });
        group.finish();
    }
    let events: Vec<&[u8]> = openai.split_inclusive("\n\n").map(str::as_bytes).collect();
    let mut group = c.benchmark_group("relay");
    group.throughput(Throughput::Bytes(openai.len() as u64));
    group.bench_function("chat_meter_baseline", |b| {
        b.iter(|| {
            let mut meter = ChatStreamMeter::new(Encoding::O200kBase);
            for event in &events {
                meter.feed(black_box(event)).unwrap();
            }
            meter.usage()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_relay);
criterion_main!(benches);
