//! Fuzzing the chat prompt counter (request bytes): any bytes and any JSON, type-confused,
//! deeply nested or not UTF-8, give a count or a typed `InvalidBody` error, never a panic; where
//! the body is readable the count equals a plain reference computed from the parsed JSON, and
//! it does not depend on the JSON's formatting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use _core::error::TokenError;
use _core::tokens::chat::{REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE, TOKENS_PER_NAME};
use _core::tokens::{count_chat_prompt, model_encoding, Encoding};
use common::{arb_json, arb_scalar, arb_text, config, nested};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// What the counter must answer for `body`: `Some(Ok(count))`, `Some(Err(()))` for a body it
/// must refuse, `None` where serde's reading of an array as a struct (`["user", "hi"]` as a
/// message) makes the answer not worth modelling (only "no panic" is checked then).
fn reference(body: &Value, encoding: Encoding) -> Option<Result<usize, ()>> {
    let count = |text: Option<&str>| text.map_or(0, |text| encoding.count(text));
    let object = match body {
        Value::Object(object) => object,
        Value::Array(_) => return None,
        _ => return Some(Err(())),
    };
    let Some(Value::Array(messages)) = object.get("messages") else {
        return Some(Err(()));
    };
    let mut total = REPLY_PRIMING_TOKENS;
    for message in messages {
        let message = match message {
            Value::Object(message) => message,
            Value::Array(_) => return None,
            _ => return Some(Err(())),
        };
        let text = |key: &str| -> Result<Option<&str>, ()> {
            match message.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text)),
                Some(_) => Err(()),
            }
        };
        let (Ok(role), Ok(name), Ok(call_id)) = (text("role"), text("name"), text("tool_call_id"))
        else {
            return Some(Err(()));
        };
        total += TOKENS_PER_MESSAGE + count(role) + count(call_id);
        if name.is_some() {
            total += TOKENS_PER_NAME + count(name);
        }
        match message.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => total += encoding.count(text),
            Some(Value::Array(parts)) => {
                for part in parts {
                    let part = match part {
                        Value::Object(part) => part,
                        Value::Array(_) => return None,
                        _ => return Some(Err(())),
                    };
                    match (field_text(part, "type"), field_text(part, "text")) {
                        (Ok(kind), Ok(text)) => {
                            if kind == Some("text") {
                                total += count(text);
                            }
                        }
                        _ => return Some(Err(())),
                    }
                }
            }
            Some(_) => return Some(Err(())),
        }
        match message.get("tool_calls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(calls)) => {
                for call in calls {
                    let call = match call {
                        Value::Object(call) => call,
                        Value::Array(_) => return None,
                        _ => return Some(Err(())),
                    };
                    match call.get("function") {
                        None | Some(Value::Null) => {}
                        Some(Value::Object(function)) => {
                            match (
                                field_text(function, "name"),
                                field_text(function, "arguments"),
                            ) {
                                (Ok(name), Ok(arguments)) => {
                                    total += count(name) + count(arguments)
                                }
                                _ => return Some(Err(())),
                            }
                        }
                        Some(Value::Array(_)) => return None,
                        Some(_) => return Some(Err(())),
                    }
                }
            }
            Some(_) => return Some(Err(())),
        }
    }
    Some(Ok(total))
}

fn field_text<'v>(object: &'v Map<String, Value>, key: &str) -> Result<Option<&'v str>, ()> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(()),
    }
}

/// A field value: usually a string, sometimes any JSON (type confusion), sometimes absent.
fn arb_field() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => arb_text().prop_map(|text| Some(Value::String(text))),
        1 => Just(None),
        1 => arb_scalar().prop_map(Some),
        1 => arb_json(2).prop_map(Some),
    ]
}

fn put(object: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        object.insert(key.to_owned(), value);
    }
}

fn arb_part() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (prop_oneof![Just(Some(json!("text"))), Just(Some(json!("image_url"))), arb_field()], arb_field())
            .prop_map(|(kind, text)| {
                let mut part = Map::new();
                put(&mut part, "type", kind);
                put(&mut part, "text", text);
                Value::Object(part)
            }),
        1 => arb_json(2),
    ]
}

fn arb_tool_call() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (arb_field(), arb_field()).prop_map(|(name, arguments)| {
            let mut function = Map::new();
            put(&mut function, "name", name);
            put(&mut function, "arguments", arguments);
            json!({"id": "call_1", "type": "function", "function": function})
        }),
        1 => arb_json(2),
    ]
}

fn arb_message() -> impl Strategy<Value = Value> {
    let content = prop_oneof![
        4 => arb_text().prop_map(|text| Some(Value::String(text))),
        2 => prop::collection::vec(arb_part(), 0..4).prop_map(|parts| Some(Value::Array(parts))),
        1 => arb_field(),
    ];
    let calls = prop_oneof![
        3 => Just(None),
        2 => prop::collection::vec(arb_tool_call(), 0..3).prop_map(|calls| Some(Value::Array(calls))),
        1 => arb_field(),
    ];
    let name = prop_oneof![3 => Just(None), 1 => arb_field()];
    let call_id = prop_oneof![3 => Just(None), 1 => arb_field()];
    prop_oneof![
        8 => (arb_field(), content, name, call_id, calls).prop_map(|(role, content, name, call_id, calls)| {
            let mut message = Map::new();
            put(&mut message, "role", role);
            put(&mut message, "content", content);
            put(&mut message, "name", name);
            put(&mut message, "tool_call_id", call_id);
            put(&mut message, "tool_calls", calls);
            message.insert("extra".to_owned(), json!({"ignored": [1, 2, {"deep": null}]}));
            Value::Object(message)
        }),
        1 => arb_json(2),
    ]
}

fn arb_body() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => prop::collection::vec(arb_message(), 0..6).prop_map(|messages| {
            json!({"model": "gpt-4o", "messages": messages, "temperature": 0.5, "n": 1})
        }),
        1 => arb_json(4).prop_map(|messages| json!({"model": "gpt-4o", "messages": messages})),
        1 => arb_json(4),
    ]
}

fn arb_encoding() -> impl Strategy<Value = Encoding> {
    prop::sample::select(Encoding::ALL.to_vec())
}

proptest! {
    #![proptest_config(config(512))]

    /// Type-confused chat bodies: the count is the reference's, or a typed refusal.
    #[test]
    fn counts_equal_the_reference_or_refuse(body in arb_body(), encoding in arb_encoding()) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let counted = count_chat_prompt(&bytes, encoding.name());
        if let Err(error) = &counted {
            prop_assert!(matches!(error, TokenError::InvalidBody(_)), "{error:?}");
        }
        if let Some(expected) = reference(&body, encoding) {
            prop_assert_eq!(counted.clone().map_err(|_| ()), expected, "{}", body);
        }
        // Deterministic, and the formatting of the JSON does not change the answer (an error's
        // message names a line and column, so only its being an error is compared).
        prop_assert_eq!(count_chat_prompt(&bytes, encoding.name()), counted.clone());
        let pretty = serde_json::to_vec_pretty(&body).unwrap();
        prop_assert_eq!(count_chat_prompt(&pretty, encoding.name()).ok(), counted.ok());
    }

    /// Any bytes at all (not JSON, not UTF-8, truncated JSON): a typed error or a count.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for encoding in Encoding::ALL {
            match count_chat_prompt(&bytes, encoding.name()) {
                Ok(count) => prop_assert!(count >= REPLY_PRIMING_TOKENS),
                Err(error) => prop_assert!(matches!(error, TokenError::InvalidBody(_)), "{error:?}"),
            }
        }
    }

    /// A readable body cut short anywhere, or with one byte replaced by invalid UTF-8, is refused
    /// with a typed error (or still counted when the cut leaves valid JSON).
    #[test]
    fn truncated_and_corrupted_bodies_are_typed_errors(
        body in arb_body(),
        cut in any::<prop::sample::Index>(),
        junk in prop::sample::select(vec![0xffu8, 0xc3, 0x80, 0x00, b'"', b'\\', b'{']),
    ) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let at = cut.index(bytes.len());
        let mut corrupted = bytes.clone();
        corrupted[at] = junk;
        for input in [&bytes[..at], &corrupted[..]] {
            if let Err(error) = count_chat_prompt(input, "o200k_base") {
                prop_assert!(matches!(error, TokenError::InvalidBody(_)), "{error:?}");
            }
        }
    }

    /// An unknown encoding name is a typed error, whatever the body.
    #[test]
    fn unknown_encodings_are_typed_errors(name in ".{0,20}") {
        prop_assume!(name != "o200k_base" && name != "cl100k_base");
        prop_assert_eq!(
            count_chat_prompt(br#"{"messages":[]}"#, &name),
            Err(TokenError::UnknownEncoding(name.clone()))
        );
    }

    /// Any model name maps to a bundled encoding; unknown names are flagged as an estimate.
    #[test]
    fn any_model_name_has_an_encoding(model in ".{0,40}") {
        let found = model_encoding(&model);
        prop_assert!(Encoding::ALL.contains(&found.encoding));
        prop_assert_eq!(model_encoding(&model), found);
    }

    /// Token counting of any text is deterministic and bounded by the text's length in bytes.
    #[test]
    fn counts_are_bounded_by_the_byte_length(text in ".{0,200}", encoding in arb_encoding()) {
        let count = encoding.count(&text);
        prop_assert!(count <= text.len());
        prop_assert_eq!(encoding.count(&text), count);
    }
}

#[test]
fn deep_nesting_is_a_typed_error_not_a_stack_overflow() {
    for depth in [200, 10_000, 100_000] {
        let read = [
            nested(depth, "1"),
            format!(r#"{{"messages":{}}}"#, nested(depth, "")),
            format!(
                r#"{{"messages":[{{"role":"user","content":{}}}]}}"#,
                nested(depth, "")
            ),
            format!(
                r#"{{"messages":[{{"role":"user","content":[{{"type":"text","text":{}}}]}}]}}"#,
                nested(depth, "")
            ),
        ];
        for body in read {
            assert!(
                matches!(
                    count_chat_prompt(body.as_bytes(), "o200k_base"),
                    Err(TokenError::InvalidBody(_))
                ),
                "depth {depth}: {}",
                &body[..60]
            );
        }
        // Nesting in fields the counter skips is skipped without recursion: counted.
        let skipped = [
            format!(
                r#"{{"messages":[{{"role":"user","content":"x","extra":{}}}]}}"#,
                nested(depth, "")
            ),
            format!(
                r#"{{"messages":[],"tools":{}}}"#,
                "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth)
            ),
        ];
        let expected = [Ok(3 + 3 + 1 + 1), Ok(3)];
        for (body, expected) in skipped.iter().zip(expected) {
            assert_eq!(
                count_chat_prompt(body.as_bytes(), "o200k_base"),
                expected,
                "depth {depth}"
            );
        }
    }
}

#[test]
fn duplicate_keys_are_refused_not_last_wins() {
    // orjson (the Python side) keeps the last duplicate; serde refuses them. Pinned here so a
    // change is noticed: the request path must turn this refusal into a 400, not a 500.
    let body = br#"{"messages":[{"role":"user","content":"hi","content":"x"}]}"#;
    assert!(matches!(
        count_chat_prompt(body, "o200k_base"),
        Err(TokenError::InvalidBody(_))
    ));
}

#[test]
fn null_tool_call_and_list_name_are_typed_errors() {
    // The bodies that answered 500 in issue 13: the counter refuses them with a typed error.
    for body in [
        &br#"{"messages":[{"role":"assistant","tool_calls":[null]}]}"#[..],
        br#"{"messages":[{"role":"user","content":"hi","name":["a"]}]}"#,
        br#"{"messages":[{"role":"user","content":{"type":"text"}}]}"#,
        br#"{"messages":[{"role":"user","content":[{"type":"text","text":5}]}]}"#,
    ] {
        assert!(matches!(
            count_chat_prompt(body, "o200k_base"),
            Err(TokenError::InvalidBody(_))
        ));
    }
}

#[test]
fn huge_and_many_messages_are_counted() {
    // 1 MiB of text in one message, and 10,000 empty messages: counted, not refused.
    let big = "hello world ".repeat(1 << 16);
    let body = json!({"messages": [{"role": "user", "content": big}]});
    let count = count_chat_prompt(&serde_json::to_vec(&body).unwrap(), "o200k_base").unwrap();
    assert_eq!(count, 3 + 3 + 1 + Encoding::O200kBase.count(&big));
    let many = json!({"messages": vec![json!({"content": null}); 10_000]});
    let count = count_chat_prompt(&serde_json::to_vec(&many).unwrap(), "o200k_base").unwrap();
    assert_eq!(count, 3 + 3 * 10_000);
}
