//! The stream relay, pair by pair: passthrough (unchanged bytes, usage stripped or inserted),
//! translations (the client reassembles what the upstream said), upstream errors, bounds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod relay_support;

use _core::error::{RelayError, SseError};
use _core::relay::{Protocol, RelayConfig, Relayed, StreamRelay, Usage};
use relay_support::{
    anthropic_stream, events, openai_stream, read, read_anthropic, read_openai, relay, run, Answer,
};
use serde_json::Value;

const OPENAI: Protocol = Protocol::OpenAiChat;
const ANTHROPIC: Protocol = Protocol::AnthropicMessages;
const RESPONSES: Protocol = Protocol::OpenAiResponses;
const ARGS: &str = r#"{"city":"Paris","unit":"c"}"#;

fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("word{i} \"q\" \u{e9} 你好\n"))
        .collect()
}

fn expected(tool_id: &str, usage: (u64, u64, u64)) -> Answer {
    Answer {
        text: words(5),
        reasoning: "Let me think.".to_owned(),
        tools: vec![(
            tool_id.to_owned(),
            "get_weather".to_owned(),
            ARGS.to_owned(),
        )],
        finish: Some("tool_calls".to_owned()),
        usage: Some(usage),
        done: true,
        errors: vec![],
    }
}

/// Feeds `input` one SSE event per chunk.
fn run_by_event(relay: &mut StreamRelay, input: &str) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut unchanged = 0;
    for event in input.split_inclusive("\n\n") {
        match relay.feed(event.as_bytes()).unwrap() {
            Relayed::Unchanged => {
                unchanged += 1;
                out.extend_from_slice(event.as_bytes());
            }
            Relayed::Bytes(bytes) => out.extend_from_slice(bytes),
        }
    }
    out.extend_from_slice(relay.finish().unwrap());
    (out, unchanged)
}

#[test]
fn openai_passthrough_is_unchanged_and_metered() {
    let input = openai_stream(5);
    let mut relay = relay(OPENAI, OPENAI, true);
    let (out, unchanged) = run_by_event(&mut relay, &input);
    assert_eq!(String::from_utf8(out).unwrap(), input);
    assert_eq!(unchanged, input.matches("\n\n").count());
    assert!(relay.done());
    assert_eq!(
        relay.usage(),
        Some(Usage {
            prompt_tokens: 30,
            completion_tokens: 120,
            cached_tokens: 8,
            reasoning_tokens: 4,
            cache_creation_tokens: 0
        })
    );
    assert!(!relay.usage_counted());
    assert_eq!(relay.model(), Some("gpt-4o-2024-08-06"));
    assert_eq!(
        relay.completion_text(),
        format!("Let me think.{}get_weather{ARGS}", words(5))
    );
    assert_eq!(relay.malformed_events(), 0);
}

#[test]
fn openai_passthrough_strips_the_usage_chunk() {
    let input = openai_stream(5);
    let mut relay = relay(OPENAI, OPENAI, false);
    let out = String::from_utf8(run(&mut relay, &[input.as_bytes()])).unwrap();
    let usage_event = input
        .split_inclusive("\n\n")
        .find(|e| e.contains("\"choices\":[]"))
        .unwrap();
    assert_eq!(out, input.replace(usage_event, ""));
    assert_eq!(relay.usage().map(|u| u.prompt_tokens), Some(30));
}

#[test]
fn openai_passthrough_inserts_counted_usage_before_done() {
    let input = "data: {\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello world\"}}]}\n\ndata: [DONE]\n\n";
    let mut relay = relay(OPENAI, OPENAI, true);
    let out = String::from_utf8(run(&mut relay, &[input.as_bytes()])).unwrap();
    let (first, rest) = out.split_once("\n\n").unwrap();
    assert_eq!(
        format!("{first}\n\n"),
        input.split_inclusive("\n\n").next().unwrap()
    );
    assert_eq!(
        rest,
        "data: {\"id\":\"chatcmpl-req1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":2,\"total_tokens\":32,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\ndata: [DONE]\n\n"
    );
    assert!(relay.usage_counted());
    assert_eq!(relay.usage().map(|u| u.completion_tokens), Some(2));
}

#[test]
fn passthrough_holds_an_incomplete_event_and_finish_terminates_it() {
    let mut relay = relay(OPENAI, OPENAI, true);
    let first = b"data: {\"choices\":[]}\n\ndata: [DO";
    assert_eq!(
        relay.feed(first).unwrap(),
        Relayed::Bytes(b"data: {\"choices\":[]}\n\n")
    );
    assert_eq!(relay.feed(b"NE]").unwrap(), Relayed::Bytes(b""));
    assert!(!relay.done());
    let rest = String::from_utf8(relay.finish().unwrap().to_vec()).unwrap();
    assert!(rest.ends_with("\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":0,\"total_tokens\":30,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\ndata: [DONE]\n\n"), "{rest}");
    assert!(relay.done());
}

#[test]
fn anthropic_passthrough_is_unchanged_and_metered() {
    let input = anthropic_stream(5);
    let mut relay = relay(ANTHROPIC, ANTHROPIC, false);
    let (out, unchanged) = run_by_event(&mut relay, &input);
    assert_eq!(String::from_utf8(out).unwrap(), input);
    assert_eq!(unchanged, input.matches("\n\n").count());
    assert!(relay.done());
    assert_eq!(
        relay.usage(),
        Some(Usage {
            prompt_tokens: 30,
            completion_tokens: 120,
            cached_tokens: 7,
            reasoning_tokens: 0,
            cache_creation_tokens: 3
        })
    );
    assert_eq!(relay.model(), Some("claude-sonnet-4-5"));
    assert_eq!(
        relay.completion_text(),
        format!("Let me think.{}get_weather{ARGS}", words(5))
    );
}

#[test]
fn responses_passthrough_is_unchanged_and_metered() {
    let input = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",\"status\":\"in_progress\",\"usage\":null}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"m\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\",\"logprobs\":[]}\n\n",
        "event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"sequence_number\":2,\"item_id\":\"f\",\"output_index\":1,\"delta\":\"{}\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":3,\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",\"status\":\"completed\",\"error\":null,\"usage\":{\"input_tokens\":11,\"input_tokens_details\":{\"cached_tokens\":2},\"output_tokens\":9,\"output_tokens_details\":{\"reasoning_tokens\":5},\"total_tokens\":20}}}\n\n",
    );
    let mut relay = relay(RESPONSES, RESPONSES, false);
    let (out, unchanged) = run_by_event(&mut relay, input);
    assert_eq!(String::from_utf8(out).unwrap(), input);
    assert_eq!(unchanged, 4);
    assert!(relay.done());
    assert_eq!(relay.error(), None);
    assert_eq!(
        relay.usage(),
        Some(Usage {
            prompt_tokens: 11,
            completion_tokens: 9,
            cached_tokens: 2,
            reasoning_tokens: 5,
            cache_creation_tokens: 0
        })
    );
    assert_eq!(relay.model(), Some("gpt-5"));
    assert_eq!(relay.completion_text(), "Hi{}");
    let error = String::from_utf8(relay.error_event("boom", "api_error", None).to_vec()).unwrap();
    assert_eq!(error, "event: error\ndata: {\"type\":\"error\",\"code\":\"api_error\",\"message\":\"boom\",\"param\":null,\"sequence_number\":4}\n\n");
}

#[test]
fn every_translation_reassembles_to_the_source_answer() {
    for (source, input, tool_id, usage) in [
        (OPENAI, openai_stream(5), "call_abc", (30, 120, 8)),
        (ANTHROPIC, anthropic_stream(5), "toolu_01", (30, 120, 7)),
    ] {
        for target in [OPENAI, ANTHROPIC, RESPONSES] {
            if target == source {
                continue;
            }
            let mut relay = relay(source, target, true);
            let answer = read(target, &run(&mut relay, &[input.as_bytes()]));
            let mut want = expected(tool_id, usage);
            if target == RESPONSES || (source, target) == (OPENAI, ANTHROPIC) {
                // Dropped: neither has a place for reasoning it can fill from a chat upstream.
                want.reasoning.clear();
            }
            assert_eq!(answer, want, "{source} -> {target}");
            assert!(relay.done());
            assert!(!relay.usage_counted());
        }
    }
}

#[test]
fn anthropic_to_openai_chunks_are_exact() {
    let mut relay = relay(ANTHROPIC, OPENAI, false);
    let out = run(&mut relay, &[anthropic_stream(1).as_bytes()]);
    let datas: Vec<String> = events(&out).into_iter().map(|(_, data)| data).collect();
    let head = r#"{"id":"chatcmpl-req1","object":"chat.completion.chunk","created":1700000000,"model":"claude-sonnet-4-5","choices":[{"index":0,"delta":"#;
    let tail = r#","logprobs":null,"finish_reason":null}]}"#;
    let chunk = |delta: &str| format!("{head}{delta}{tail}");
    assert_eq!(
        datas,
        vec![
            chunk(r#"{"role":"assistant","content":""}"#),
            chunk(r#"{"reasoning_content":"Let me think."}"#),
            chunk(r#"{"content":"word0 \"q\" é 你好\n"}"#),
            chunk(
                r#"{"tool_calls":[{"index":0,"id":"toolu_01","type":"function","function":{"name":"get_weather","arguments":""}}]}"#
            ),
            chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}"#),
            chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\","}}]}"#),
            chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"unit\":\"c\"}"}}]}"#),
            format!(r#"{head}{{}},"logprobs":null,"finish_reason":"tool_calls"}}]}}"#),
            "[DONE]".to_owned(),
        ]
    );
}

#[test]
fn openai_to_anthropic_events_are_exact() {
    let mut relay = relay(OPENAI, ANTHROPIC, false);
    let input = concat!(
        "data: {\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "data: {\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let out = String::from_utf8(run(&mut relay, &[input.as_bytes()])).unwrap();
    assert_eq!(
        out,
        concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_req1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"gpt-4o\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":30,\"output_tokens\":0,\"cache_read_input_tokens\":0,\"cache_creation_input_tokens\":0}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":30,\"output_tokens\":1,\"cache_read_input_tokens\":0,\"cache_creation_input_tokens\":0}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        )
    );
    assert!(relay.usage_counted());
    assert_eq!(
        relay
            .usage()
            .map(|u| (u.prompt_tokens, u.completion_tokens)),
        Some((30, 1))
    );
}

#[test]
fn openai_to_responses_on_length_is_incomplete() {
    let mut relay = relay(OPENAI, RESPONSES, false);
    let input = "data: {\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n";
    let out = run(&mut relay, &[input.as_bytes()]);
    let kinds: Vec<String> = events(&out).into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete",
        ]
    );
    let last: Value = serde_json::from_str(&events(&out).pop().unwrap().1).unwrap();
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(last["response"]["output"][0]["id"], "msg_req1_0");
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hi");
}

#[test]
fn a_tool_use_without_arguments_gets_an_empty_object() {
    let input = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"now\",\"input\":{}}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":3}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let mut relay = relay(ANTHROPIC, OPENAI, true);
    let answer = read_openai(&run(&mut relay, &[input.as_bytes()]));
    assert_eq!(
        answer.tools,
        vec![("t1".to_owned(), "now".to_owned(), "{}".to_owned())]
    );
    assert_eq!(answer.finish.as_deref(), Some("tool_calls"));
    assert_eq!(answer.usage, Some((5, 3, 0)));
}

#[test]
fn the_json_tool_is_the_answer_text() {
    let input = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"json_answer\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":3}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let mut config = RelayConfig::new(ANTHROPIC, OPENAI);
    config.json_tool = Some("json_answer".to_owned());
    let mut relay = StreamRelay::new(config).unwrap();
    let answer = read_openai(&run(&mut relay, &[input.as_bytes()]));
    assert_eq!(answer.text, "{\"a\":1}");
    assert!(answer.tools.is_empty());
    assert_eq!(answer.finish.as_deref(), Some("stop"));
}

#[test]
fn upstream_errors_become_target_errors_and_end_the_stream() {
    let anthropic_error = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let mut relay = relay(ANTHROPIC, OPENAI, false);
    let out = String::from_utf8(run(&mut relay, &[anthropic_error.as_bytes()])).unwrap();
    assert_eq!(out, "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"overloaded_error\",\"param\":null,\"code\":\"overloaded_error\"}}\n\n");
    assert!(relay.done());
    assert_eq!(
        relay.error(),
        Some("{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}")
    );

    let openai_error = "data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}\n\n";
    let mut relay = relay_to(ANTHROPIC);
    let answer = read_anthropic(&run(&mut relay, &[openai_error.as_bytes()]));
    assert_eq!(
        answer.errors,
        vec![serde_json::json!({"type": "rate_limit_error", "message": "Rate limit reached"})]
    );
    assert!(relay.done());

    let mut relay = relay_to(RESPONSES);
    let out = run(&mut relay, &[openai_error.as_bytes()]);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "event: error\ndata: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"Rate limit reached\",\"param\":null,\"sequence_number\":0}\n\n"
    );
}

fn relay_to(target: Protocol) -> StreamRelay {
    relay(OPENAI, target, false)
}

#[test]
fn error_events_in_each_target_protocol() {
    let mut relay = relay_to(OPENAI);
    assert_eq!(
        relay.error_event("upstream \"x\" broke off", "api_error", Some("upstream_error")),
        b"data: {\"error\":{\"message\":\"upstream \\\"x\\\" broke off\",\"type\":\"api_error\",\"param\":null,\"code\":\"upstream_error\"}}\n\n"
    );
    assert!(relay.done());
    assert_eq!(
        relay_to(ANTHROPIC).error_event("gone", "api_error", None),
        b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"gone\"}}\n\n"
    );
    let mut relay = relay_to(RESPONSES);
    relay
        .feed(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n")
        .unwrap();
    let error: Value =
        serde_json::from_str(&events(relay.error_event("gone", "api_error", None))[0].1).unwrap();
    // response.created, in_progress, output_item.added, content_part.added, output_text.delta.
    assert_eq!(error["sequence_number"], 5);
}

#[test]
fn unsupported_pairs_and_protocols_are_errors() {
    for target in [OPENAI, ANTHROPIC] {
        assert_eq!(
            StreamRelay::new(RelayConfig::new(RESPONSES, target)).err(),
            Some(RelayError::UnsupportedPair {
                from: "openai.responses",
                to: target.name()
            })
        );
    }
    assert!(Protocol::from_name("gemini").is_err());
    assert_eq!(Protocol::from_name("anthropic.messages"), Ok(ANTHROPIC));
}

#[test]
fn an_oversize_event_is_an_error_after_the_events_before_it() {
    let mut config = RelayConfig::new(ANTHROPIC, ANTHROPIC);
    config.max_event_bytes = 64;
    let mut relay = StreamRelay::new(config).unwrap();
    let input = format!(
        "data: {{\"type\":\"ping\"}}\n\ndata: {}\n\n",
        "x".repeat(100)
    );
    assert_eq!(
        relay.feed(input.as_bytes()).unwrap(),
        Relayed::Bytes(b"data: {\"type\":\"ping\"}\n\n")
    );
    assert_eq!(
        relay.feed(b"\n\n"),
        Err(SseError::LineTooLong { limit: 64 })
    );
    assert_eq!(relay.finish(), Err(SseError::LineTooLong { limit: 64 }));
}

#[test]
fn malformed_events_are_counted_and_skipped() {
    let mut relay = relay(OPENAI, ANTHROPIC, false);
    let out = run(
        &mut relay,
        &[b"data: nope\n\ndata: {\"choices\":5}\n\n: comment\n\ndata: [DONE]\n\n"],
    );
    assert_eq!(relay.malformed_events(), 2);
    let answer = read_anthropic(&out);
    assert!(answer.done);
    assert_eq!(answer.finish.as_deref(), Some("stop"));
}

#[test]
fn a_broken_off_stream_gets_no_terminal_event() {
    let input = openai_stream(2);
    let cut = input.find("data: [DONE]").unwrap();
    for target in [ANTHROPIC, RESPONSES, OPENAI] {
        let mut relay = relay(OPENAI, target, true);
        let answer = read(target, &run(&mut relay, &[&input.as_bytes()[..cut]]));
        assert!(!answer.done, "{target}");
        assert!(!relay.done());
    }
}

/// An OpenAI chat chunk with one choice.
fn chat_chunk(delta: &str, finish: Option<&str>) -> String {
    let finish = finish.map_or("null".to_owned(), |reason| format!("\"{reason}\""));
    format!("data: {{\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n")
}

/// The data of every event of `out`, parsed.
fn datas(out: &[u8]) -> Vec<Value> {
    events(out)
        .into_iter()
        .map(|(_, data)| serde_json::from_str(&data).unwrap())
        .collect()
}

const CALL: &str = r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"now","arguments":"{}"}}]}"#;

#[test]
fn a_stop_after_tool_calls_is_tool_use_to_anthropic() {
    for (finish, stop) in [
        ("stop", "tool_use"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
    ] {
        let input = chat_chunk(CALL, None) + &chat_chunk("{}", Some(finish)) + "data: [DONE]\n\n";
        let out = run(&mut relay_to(ANTHROPIC), &[input.as_bytes()]);
        let delta = datas(&out).into_iter().rev().nth(1).unwrap();
        assert_eq!(delta["type"], "message_delta");
        assert_eq!(delta["delta"]["stop_reason"], stop, "{finish}");
    }
    // Without tool calls a stop stays end_turn.
    let input = chat_chunk(r#"{"content":"hi"}"#, Some("stop")) + "data: [DONE]\n\n";
    let answer = read_anthropic(&run(&mut relay_to(ANTHROPIC), &[input.as_bytes()]));
    assert_eq!(answer.finish.as_deref(), Some("stop"));
}

#[test]
fn a_refusal_is_a_text_block_of_its_own_to_anthropic() {
    let input = chat_chunk(r#"{"role":"assistant","content":"","refusal":null}"#, None)
        + &chat_chunk(r#"{"content":"Well."}"#, None)
        + &chat_chunk(r#"{"refusal":"I can't "}"#, None)
        + &chat_chunk(r#"{"refusal":"help."}"#, None)
        + &chat_chunk("{}", Some("stop"))
        + "data: [DONE]\n\n";
    let mut relay = relay_to(ANTHROPIC);
    let out = run(&mut relay, &[input.as_bytes()]);
    let blocks: Vec<(u64, String)> = datas(&out)
        .iter()
        .filter(|data| data["type"] == "content_block_delta")
        .map(|data| {
            assert_eq!(data["delta"]["type"], "text_delta");
            let text = data["delta"]["text"].as_str().unwrap().to_owned();
            (data["index"].as_u64().unwrap(), text)
        })
        .collect();
    assert_eq!(
        blocks,
        [
            (0, "Well.".into()),
            (1, "I can't ".into()),
            (1, "help.".into())
        ]
    );
    let answer = read_anthropic(&out);
    assert_eq!(answer.finish.as_deref(), Some("content_filter")); // stop_reason "refusal"
    assert_eq!(relay.completion_text(), "Well.I can't help.");
}

#[test]
fn a_refusal_is_a_refusal_part_to_responses() {
    let input = chat_chunk(r#"{"content":"Well."}"#, None)
        + &chat_chunk(r#"{"refusal":"No."}"#, None)
        + &chat_chunk("{}", Some("stop"))
        + "data: [DONE]\n\n";
    let mut relay = relay_to(RESPONSES);
    let out = run(&mut relay, &[input.as_bytes()]);
    let datas = datas(&out);
    let kinds: Vec<&str> = datas.iter().map(|d| d["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.content_part.added",
            "response.refusal.delta",
            "response.refusal.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let refusal = serde_json::json!({"type": "refusal", "refusal": "No."});
    assert_eq!(
        datas[7]["part"],
        serde_json::json!({"type": "refusal", "refusal": ""})
    );
    for (event, key) in [
        (7, "content_index"),
        (8, "content_index"),
        (9, "content_index"),
    ] {
        assert_eq!(datas[event][key], 1);
    }
    assert_eq!(datas[8]["delta"], "No.");
    assert_eq!(datas[9]["refusal"], "No.");
    assert_eq!(datas[10]["part"], refusal);
    let content = &datas[12]["response"]["output"][0]["content"];
    assert_eq!(content[0]["text"], "Well.");
    assert_eq!(content[1], refusal);
    assert_eq!(datas[11]["item"]["content"], *content);
    assert_eq!(relay.completion_text(), "Well.No.");
}

#[test]
fn a_refusal_passes_through_metered() {
    let input = chat_chunk(r#"{"refusal":"No."}"#, Some("stop")) + "data: [DONE]\n\n";
    let mut relay = relay(OPENAI, OPENAI, false);
    assert_eq!(run(&mut relay, &[input.as_bytes()]), input.as_bytes());
    assert_eq!(relay.completion_text(), "No.");
}

#[test]
fn reasoning_is_dropped_to_anthropic_but_metered() {
    let input = chat_chunk(r#"{"reasoning_content":"Let me think."}"#, None)
        + &chat_chunk(r#"{"content":"hi"}"#, Some("stop"))
        + "data: [DONE]\n\n";
    let mut relay = relay_to(ANTHROPIC);
    let out = run(&mut relay, &[input.as_bytes()]);
    let starts: Vec<Value> = datas(&out)
        .into_iter()
        .filter(|data| data["type"] == "content_block_start")
        .map(|data| data["content_block"].clone())
        .collect();
    assert_eq!(starts, [serde_json::json!({"type": "text", "text": ""})]);
    let answer = read_anthropic(&out);
    assert_eq!(
        (answer.text.as_str(), answer.reasoning.as_str()),
        ("hi", "")
    );
    assert_eq!(relay.completion_text(), "Let me think.hi");
}

#[test]
fn anthropic_thinking_tokens_are_reasoning_tokens() {
    let start = |details: &str| {
        format!("event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"model\":\"claude\",\"usage\":{{\"input_tokens\":5,\"output_tokens\":1{details}}}}}}}\n\n")
    };
    let end = |details: &str| {
        format!("event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"output_tokens\":9{details}}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n")
    };
    let details = ",\"output_tokens_details\":{\"thinking_tokens\":4}";
    // In message_delta, in message_start only, and updated by message_delta.
    for (input, thinking) in [
        (start("") + &end(details), 4),
        (start(details) + &end(""), 4),
        (
            start(details) + &end(",\"output_tokens_details\":{\"thinking_tokens\":7}"),
            7,
        ),
        (start("") + &end(",\"output_tokens_details\":null"), 0),
    ] {
        let mut relay = relay(ANTHROPIC, OPENAI, true);
        let out = run(&mut relay, &[input.as_bytes()]);
        assert_eq!(relay.usage().map(|u| u.reasoning_tokens), Some(thinking));
        let usage = datas(&out[..out.len() - "data: [DONE]\n\n".len()])
            .pop()
            .unwrap()["usage"]
            .clone();
        assert_eq!(
            usage["completion_tokens_details"]["reasoning_tokens"],
            thinking
        );
        let mut passthrough = relay_support::relay(ANTHROPIC, ANTHROPIC, false);
        run(&mut passthrough, &[input.as_bytes()]);
        assert_eq!(passthrough.usage(), relay.usage());
    }
}

#[test]
fn a_message_cut_by_the_token_limit_is_incomplete_to_responses() {
    for (finish, status) in [
        ("length", "incomplete"),
        ("content_filter", "incomplete"),
        ("stop", "completed"),
    ] {
        let input = chat_chunk(r#"{"content":"Hi"}"#, Some(finish)) + "data: [DONE]\n\n";
        let datas = datas(&run(&mut relay_to(RESPONSES), &[input.as_bytes()]));
        let done = datas
            .iter()
            .find(|data| data["type"] == "response.output_item.done")
            .unwrap();
        assert_eq!(done["item"]["status"], status, "{finish}");
        let response = &datas.last().unwrap()["response"];
        assert_eq!(response["status"], status);
        assert_eq!(response["output"][0]["status"], status);
    }
    // Text, then a tool call, then the limit: the message is incomplete in the final response, the
    // call completed (as the whole answer has them).
    let input = chat_chunk(r#"{"content":"Hi"}"#, None)
        + &chat_chunk(CALL, Some("length"))
        + "data: [DONE]\n\n";
    let datas = datas(&run(&mut relay_to(RESPONSES), &[input.as_bytes()]));
    let output = &datas.last().unwrap()["response"]["output"];
    assert_eq!(output[0]["status"], "incomplete");
    assert_eq!(output[1]["status"], "completed");
}

#[test]
fn anthropic_usage_names_cache_creation_tokens() {
    let input = chat_chunk(r#"{"content":"hi"}"#, Some("stop"))
        + "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":8}}}\n\ndata: [DONE]\n\n";
    let datas = datas(&run(&mut relay_to(ANTHROPIC), &[input.as_bytes()]));
    let start = &datas[0]["message"]["usage"];
    assert_eq!(start["cache_creation_input_tokens"], 0);
    assert_eq!(start["cache_read_input_tokens"], 0);
    let delta = &datas[datas.len() - 2];
    assert_eq!(
        delta["usage"],
        serde_json::json!({"input_tokens": 22, "output_tokens": 2, "cache_read_input_tokens": 8, "cache_creation_input_tokens": 0})
    );
}
