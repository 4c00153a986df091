//! Shared by the relay tests: sample upstream streams, and readers that reassemble the answer
//! (text, tool calls, finish reason, usage) from a stream of each protocol.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use _core::relay::{Protocol, RelayConfig, Relayed, StreamRelay};
use _core::sse::SseParser;
use serde_json::Value;

/// An OpenAI chat stream: role, reasoning, `deltas` content deltas (escapes, non-ASCII), a tool
/// call in three argument fragments, finish `tool_calls`, usage, `[DONE]`.
pub fn openai_stream(deltas: usize) -> String {
    let head = r#"{"id":"chatcmpl-up","object":"chat.completion.chunk","created":1732540000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":["#;
    let chunk = |choice: &str| format!("data: {head}{choice}],\"usage\":null}}\n\n");
    let mut s = chunk(
        r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
    );
    s += &chunk(
        r#"{"index":0,"delta":{"reasoning_content":"Let me think."},"logprobs":null,"finish_reason":null}"#,
    );
    for i in 0..deltas {
        s += &chunk(&format!(
            r#"{{"index":0,"delta":{{"content":"word{i} \"q\" \u00e9 你好\n"}},"logprobs":null,"finish_reason":null}}"#
        ));
    }
    s += &chunk(
        r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}"#,
    );
    for part in [r#"{\"city\":"#, r#"\"Paris\","#, r#"\"unit\":\"c\"}"#] {
        s += &chunk(&format!(
            r#"{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"{part}"}}}}]}},"logprobs":null,"finish_reason":null}}"#
        ));
    }
    s += &chunk(r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}"#);
    s += &format!("data: {head}],\"usage\":{{\"prompt_tokens\":30,\"completion_tokens\":120,\"total_tokens\":150,\"prompt_tokens_details\":{{\"cached_tokens\":8}},\"completion_tokens_details\":{{\"reasoning_tokens\":4}}}}}}\n\n");
    s += "data: [DONE]\n\n";
    s
}

/// An Anthropic Messages stream: message_start with cache usage, ping, a thinking block (with a
/// signature), a text block of `deltas` deltas, a tool_use block, message_delta, message_stop.
pub fn anthropic_stream(deltas: usize) -> String {
    let event = |kind: &str, data: &str| format!("event: {kind}\ndata: {data}\n\n");
    let mut s = event(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_up","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":20,"cache_creation_input_tokens":3,"cache_read_input_tokens":7,"output_tokens":1}}}"#,
    );
    s += &event("ping", r#"{"type": "ping"}"#);
    s += &event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
    );
    s += &event(
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think."}}"#,
    );
    s += &event(
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}"#,
    );
    s += &event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    );
    s += &event(
        "content_block_start",
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
    );
    for i in 0..deltas {
        s += &event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":1,"delta":{{"type":"text_delta","text":"word{i} \"q\" \u00e9 你好\n"}}}}"#
            ),
        );
    }
    s += &event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":1}"#,
    );
    s += &event(
        "content_block_start",
        r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}"#,
    );
    for part in [r#"{\"city\":"#, r#"\"Paris\","#, r#"\"unit\":\"c\"}"#] {
        s += &event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":2,"delta":{{"type":"input_json_delta","partial_json":"{part}"}}}}"#
            ),
        );
    }
    s += &event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":2}"#,
    );
    s += &event(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":120}}"#,
    );
    s += &event("message_stop", r#"{"type":"message_stop"}"#);
    s
}

/// An answer as a client reassembles it from a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub reasoning: String,
    /// `(id, name, arguments)`.
    pub tools: Vec<(String, String, String)>,
    /// In OpenAI chat's vocabulary.
    pub finish: Option<String>,
    /// `(prompt, completion, cached)`.
    pub usage: Option<(u64, u64, u64)>,
    /// The stream's terminal event was seen.
    pub done: bool,
    pub errors: Vec<Value>,
}

/// Every SSE event of `bytes`: `(event type, data)`.
pub fn events(bytes: &[u8]) -> Vec<(String, String)> {
    let mut parser = SseParser::default();
    let mut events = parser.feed(bytes).unwrap();
    events.extend(parser.finish().unwrap());
    events.into_iter().map(|e| (e.event, e.data)).collect()
}

fn n(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// Reassembles an OpenAI chat stream (choice 0).
pub fn read_openai(bytes: &[u8]) -> Answer {
    let mut answer = Answer::default();
    for (_, data) in events(bytes) {
        if data == "[DONE]" {
            answer.done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        if let Some(error) = chunk.get("error") {
            answer.errors.push(error.clone());
            continue;
        }
        assert_eq!(chunk["object"], "chat.completion.chunk", "{data}");
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            answer.usage = Some((
                n(&usage["prompt_tokens"]),
                n(&usage["completion_tokens"]),
                n(&usage["prompt_tokens_details"]["cached_tokens"]),
            ));
        }
        for choice in chunk["choices"].as_array().unwrap() {
            let delta = &choice["delta"];
            answer.text += delta["content"].as_str().unwrap_or("");
            answer.reasoning += delta["reasoning_content"].as_str().unwrap_or("");
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap() as usize;
                if answer.tools.len() <= index {
                    answer.tools.resize(index + 1, Default::default());
                }
                let tool = &mut answer.tools[index];
                tool.0 += call["id"].as_str().unwrap_or("");
                tool.1 += call["function"]["name"].as_str().unwrap_or("");
                tool.2 += call["function"]["arguments"].as_str().unwrap_or("");
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                answer.finish = Some(reason.to_owned());
            }
        }
    }
    answer
}

/// Reassembles an Anthropic Messages stream, checking the block structure.
pub fn read_anthropic(bytes: &[u8]) -> Answer {
    let mut answer = Answer::default();
    let mut blocks: Vec<Value> = Vec::new();
    let mut open: Option<usize> = None;
    let mut input = 0;
    for (kind, data) in events(bytes) {
        let event: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(event["type"], kind.as_str(), "{data}");
        match kind.as_str() {
            "message_start" => input = n(&event["message"]["usage"]["input_tokens"]),
            "content_block_start" => {
                assert_eq!(open, None, "a block opened while another is open");
                let index = n(&event["index"]) as usize;
                assert_eq!(index, blocks.len(), "blocks are numbered in order");
                blocks.push(event["content_block"].clone());
                open = Some(index);
            }
            "content_block_delta" => {
                let index = n(&event["index"]) as usize;
                assert_eq!(open, Some(index));
                let delta = &event["delta"];
                let block = &mut blocks[index];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => answer.text += delta["text"].as_str().unwrap(),
                    "thinking_delta" => answer.reasoning += delta["thinking"].as_str().unwrap(),
                    "input_json_delta" => {
                        let args = block
                            .get("args")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned();
                        block["args"] =
                            Value::String(args + delta["partial_json"].as_str().unwrap());
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                assert_eq!(open, Some(n(&event["index"]) as usize));
                open = None;
            }
            "message_delta" => {
                assert_eq!(open, None);
                let reason = event["delta"]["stop_reason"].as_str().unwrap();
                answer.finish = Some(
                    match reason {
                        "max_tokens" => "length",
                        "tool_use" => "tool_calls",
                        "refusal" => "content_filter",
                        _ => "stop",
                    }
                    .to_owned(),
                );
                let usage = &event["usage"];
                let cached = n(&usage["cache_read_input_tokens"]);
                let input = usage.get("input_tokens").map_or(input, n);
                let creation = n(&usage["cache_creation_input_tokens"]);
                answer.usage = Some((
                    input + cached + creation,
                    n(&usage["output_tokens"]),
                    cached,
                ));
            }
            "message_stop" => answer.done = true,
            "error" => answer.errors.push(event["error"].clone()),
            _ => {}
        }
    }
    for block in blocks {
        if block["type"] == "tool_use" {
            let args = block
                .get("args")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            answer.tools.push((
                block["id"].as_str().unwrap().to_owned(),
                block["name"].as_str().unwrap().to_owned(),
                args,
            ));
        }
    }
    answer
}

/// Reassembles an OpenAI Responses stream, checking sequence numbers and that the final
/// response repeats what the deltas said.
pub fn read_responses(bytes: &[u8]) -> Answer {
    let mut answer = Answer::default();
    let mut args: Vec<(String, String, String)> = Vec::new();
    for (sequence, (kind, data)) in events(bytes).into_iter().enumerate() {
        let event: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(event["type"], kind.as_str(), "{data}");
        assert_eq!(n(&event["sequence_number"]), sequence as u64, "{data}");
        match kind.as_str() {
            "response.output_text.delta" => answer.text += event["delta"].as_str().unwrap(),
            "response.output_item.added" if event["item"]["type"] == "function_call" => {
                let item = &event["item"];
                args.push((
                    item["call_id"].as_str().unwrap().to_owned(),
                    item["name"].as_str().unwrap().to_owned(),
                    String::new(),
                ));
            }
            "response.function_call_arguments.delta" => {
                args.last_mut().unwrap().2 += event["delta"].as_str().unwrap();
            }
            "response.completed" | "response.incomplete" => {
                let response = &event["response"];
                answer.done = true;
                answer.finish = Some(
                    match response["incomplete_details"]["reason"].as_str() {
                        Some("max_output_tokens") => "length",
                        Some(_) => "content_filter",
                        None if !args.is_empty() => "tool_calls",
                        None => "stop",
                    }
                    .to_owned(),
                );
                let usage = &response["usage"];
                answer.usage = Some((
                    n(&usage["input_tokens"]),
                    n(&usage["output_tokens"]),
                    n(&usage["input_tokens_details"]["cached_tokens"]),
                ));
                let mut text = String::new();
                let mut tools = Vec::new();
                for item in response["output"].as_array().unwrap() {
                    match item["type"].as_str().unwrap() {
                        "message" => {
                            for part in item["content"].as_array().unwrap() {
                                text += part["text"].as_str().unwrap();
                            }
                        }
                        "function_call" => tools.push((
                            item["call_id"].as_str().unwrap().to_owned(),
                            item["name"].as_str().unwrap().to_owned(),
                            item["arguments"].as_str().unwrap().to_owned(),
                        )),
                        other => panic!("unexpected item {other}"),
                    }
                }
                assert_eq!(text, answer.text);
                assert_eq!(tools, args);
            }
            "error" => answer.errors.push(event.clone()),
            _ => {}
        }
    }
    answer.tools = args;
    answer
}

/// Reassembles a stream of `protocol`.
pub fn read(protocol: Protocol, bytes: &[u8]) -> Answer {
    match protocol {
        Protocol::OpenAiChat => read_openai(bytes),
        Protocol::AnthropicMessages => read_anthropic(bytes),
        Protocol::OpenAiResponses => read_responses(bytes),
    }
}

/// A relay from `source` to `target` with a request id, model and created time set.
pub fn relay(source: Protocol, target: Protocol, include_usage: bool) -> StreamRelay {
    let mut config = RelayConfig::new(source, target);
    config.request_id = "req1".to_owned();
    config.model = "fallback-model".to_owned();
    config.created = 1_700_000_000;
    config.prompt_tokens = 30;
    config.include_usage = include_usage;
    StreamRelay::new(config).unwrap()
}

/// Runs `input`, split into `chunks`, through `relay`; returns the concatenated output.
pub fn run(relay: &mut StreamRelay, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks {
        match relay.feed(chunk).unwrap() {
            Relayed::Unchanged => out.extend_from_slice(chunk),
            Relayed::Bytes(bytes) => out.extend_from_slice(bytes),
        }
    }
    out.extend_from_slice(relay.finish().unwrap());
    out
}

/// Cuts `input` at the (sorted) offsets.
pub fn split<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        chunks.push(&input[start..cut]);
        start = cut;
    }
    chunks.push(&input[start..]);
    chunks
}
