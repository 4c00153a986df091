//! Structured outputs' schema check: valid answers, each kind of violation with its JSON pointer and
//! masked message, schemas that do not compile (bad JSON, bad schema, remote `$ref`, a backtracking
//! pattern, too large), the error limit, answers that are not JSON, and the bounds on pathological
//! schemas (self references, deep answers, linear-time patterns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use _core::error::SchemaError;
use _core::schema::{
    JsonSchema, Violation, BASE_STEPS, MAX_MESSAGE_BYTES, MAX_SCHEMA_BYTES, STEPS_PER_VALUE,
};

const PERSON: &str = r#"{
  "type": "object",
  "properties": {
    "name": {"type": "string"},
    "age": {"type": "integer", "minimum": 0},
    "role": {"enum": ["admin", "user"]},
    "address": {
      "type": "object",
      "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
      "required": ["city"]
    },
    "tags": {"type": "array", "items": {"type": "string"}}
  },
  "required": ["name", "age"],
  "additionalProperties": false
}"#;

fn person() -> JsonSchema {
    JsonSchema::new(PERSON.as_bytes()).unwrap()
}

/// The violations of `answer` as (pointer, message) pairs.
fn errors(schema: &JsonSchema, answer: &str, limit: usize) -> Vec<(String, String)> {
    schema
        .errors(answer.as_bytes(), limit)
        .unwrap()
        .into_iter()
        .map(|Violation { pointer, message }| (pointer, message))
        .collect()
}

fn pair(pointer: &str, message: &str) -> (String, String) {
    (pointer.to_owned(), message.to_owned())
}

#[test]
fn a_valid_answer_has_no_errors() {
    let schema = person();
    let answer = r#"{"name": "Ada", "age": 36, "role": "admin", "address": {"city": "London", "zip": "12345"},
                     "tags": ["math"]}"#;
    assert_eq!(errors(&schema, answer, 5), vec![]);
    assert_eq!(errors(&schema, r#"{"name": "", "age": 0}"#, 5), vec![]);
}

#[test]
fn a_wrong_type_is_reported_at_its_pointer_with_the_value_masked() {
    let schema = person();
    assert_eq!(
        errors(&schema, r#"{"name": "Ada", "age": "thirty-six"}"#, 5),
        vec![pair("/age", r#"value is not of type "integer""#)]
    );
    assert_eq!(
        errors(&schema, "[1, 2]", 5),
        vec![pair("", r#"value is not of type "object""#)]
    );
}

#[test]
fn a_missing_required_property_is_reported_at_its_object() {
    assert_eq!(
        errors(&person(), r#"{"name": "Ada"}"#, 5),
        vec![pair("", r#""age" is a required property"#)]
    );
}

#[test]
fn a_value_outside_the_enum_is_reported() {
    assert_eq!(
        errors(&person(), r#"{"name": "Ada", "age": 1, "role": "root"}"#, 5),
        vec![pair("/role", r#"value is not one of "admin" or "user""#)]
    );
}

#[test]
fn nested_violations_have_nested_pointers() {
    let answer = r#"{"name": "Ada", "age": 1, "address": {"zip": "1234x"}, "tags": ["a", 2]}"#;
    let mut found = errors(&person(), answer, 10);
    found.sort();
    assert_eq!(
        found,
        vec![
            pair("/address", r#""city" is a required property"#),
            pair("/address/zip", r#"value does not match "^[0-9]{5}$""#),
            pair("/tags/1", r#"value is not of type "string""#),
        ]
    );
}

#[test]
fn additional_properties_and_pointer_escapes() {
    let schema =
        JsonSchema::new(br#"{"properties": {"a/b": {"properties": {"c~d": {"type": "null"}}}}}"#)
            .unwrap();
    assert_eq!(
        errors(&schema, r#"{"a/b": {"c~d": 1}}"#, 5),
        vec![pair("/a~1b/c~0d", r#"value is not of type "null""#)]
    );
    let found = errors(&person(), r#"{"name": "Ada", "age": 1, "extra": true}"#, 5);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "");
    assert!(found[0].1.contains("'extra'"), "{:?}", found[0]);
}

#[test]
fn formats_are_asserted() {
    let schema = JsonSchema::new(br#"{"type": "string", "format": "date-time"}"#).unwrap();
    assert_eq!(errors(&schema, r#""2025-07-01T12:00:00Z""#, 5), vec![]);
    assert_eq!(
        errors(&schema, r#""tomorrow""#, 5),
        vec![pair("", r#"value is not a "date-time""#)]
    );
    let unknown = JsonSchema::new(br#"{"type": "string", "format": "x-custom"}"#).unwrap();
    assert_eq!(errors(&unknown, r#""anything""#, 5), vec![]);
}

#[test]
fn the_limit_caps_the_errors_and_zero_reads_as_one() {
    let schema = JsonSchema::new(br#"{"type": "array", "items": {"type": "integer"}}"#).unwrap();
    let answer = r#"["a", "b", "c", "d", "e", "f", "g"]"#;
    assert_eq!(errors(&schema, answer, 100).len(), 7);
    let three = errors(&schema, answer, 3);
    assert_eq!(
        three.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        vec!["/0", "/1", "/2"]
    );
    assert_eq!(errors(&schema, answer, 0).len(), 1);
    assert_eq!(errors(&schema, "[1, 2]", 0), vec![]);
}

#[test]
fn an_answer_that_is_not_json_is_one_error_at_the_root() {
    let schema = person();
    for answer in [
        "",
        "Sure! Here is the JSON: {\"name\": 1}",
        "{\"name\": \"Ada\"",
        "```json\n{}\n```",
    ] {
        let found = errors(&schema, answer, 5);
        assert_eq!(found.len(), 1, "{answer:?}: {found:?}");
        assert_eq!(found[0].0, "");
        assert!(
            found[0].1.starts_with("the answer is not JSON: "),
            "{found:?}"
        );
    }
    let found = schema.errors(&[0xff, 0xfe], 5).unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        found[0].message.starts_with("the answer is not JSON"),
        "{found:?}"
    );
}

#[test]
fn a_schema_that_does_not_compile_is_an_error() {
    assert!(matches!(
        JsonSchema::new(b"{\"type\": "),
        Err(SchemaError::NotJson(_))
    ));
    let bad = JsonSchema::new(br#"{"type": "object", "properties": {"a": {"type": "strin"}}}"#);
    match bad {
        Err(SchemaError::Invalid { pointer, message }) => {
            assert_eq!(pointer, "/properties/a/type", "{message}");
            assert!(message.contains("strin"), "{message}");
        }
        other => panic!("expected Invalid, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        JsonSchema::new(br#"{"minLength": -1}"#),
        Err(SchemaError::Invalid { .. })
    ));
    assert!(matches!(
        JsonSchema::new(br##"{"$ref": "#/$defs/missing"}"##),
        Err(SchemaError::Invalid { .. })
    ));
}

#[test]
fn remote_references_are_never_fetched() {
    for schema in [
        r#"{"$ref": "https://example.com/schema.json"}"#,
        r#"{"properties": {"a": {"$ref": "file:///etc/passwd"}}}"#,
        r#"{"$schema": "https://example.com/my-meta-schema", "type": "object"}"#,
    ] {
        let result = JsonSchema::new(schema.as_bytes());
        assert!(
            matches!(result, Err(SchemaError::Invalid { .. })),
            "{schema}"
        );
    }
}

#[test]
fn patterns_run_on_the_linear_time_engine() {
    // look-around and back-references need backtracking: refused when the schema compiles
    for pattern in [r"(?=a)a", r"(a)\1", r"(?<!x)y"] {
        let schema = format!(
            r#"{{"type": "string", "pattern": "{}"}}"#,
            pattern.replace('\\', "\\\\")
        );
        assert!(
            matches!(
                JsonSchema::new(schema.as_bytes()),
                Err(SchemaError::Invalid { .. })
            ),
            "{pattern}"
        );
    }
    // the classic catastrophic pattern is a plain automaton here: a long non-matching text is one pass
    let schema = JsonSchema::new(br#"{"type": "string", "pattern": "^(a+)+$"}"#).unwrap();
    let answer = format!("\"{}!\"", "a".repeat(100_000));
    assert_eq!(errors(&schema, &answer, 5).len(), 1);
    // a pattern whose compiled program is over the size limit is refused
    let huge = JsonSchema::new(br#"{"pattern": "^(.{1000}){1000}$"}"#);
    assert!(matches!(huge, Err(SchemaError::Invalid { .. })));
}

#[test]
fn a_schema_over_the_size_limit_is_refused() {
    let names: Vec<String> = (0..MAX_SCHEMA_BYTES / 8)
        .map(|i| format!("\"p{i}\""))
        .collect();
    let schema = format!(r#"{{"required": [{}]}}"#, names.join(","));
    assert!(schema.len() > MAX_SCHEMA_BYTES);
    assert!(matches!(
        JsonSchema::new(schema.as_bytes()),
        Err(SchemaError::TooLarge {
            limit: MAX_SCHEMA_BYTES,
            ..
        })
    ));
}

#[test]
fn recursive_schemas_compile_and_validate_as_deep_as_the_answer() {
    let tree = JsonSchema::new(
        br##"{"$defs": {"node": {"type": "object", "properties": {"children": {"type": "array",
             "items": {"$ref": "#/$defs/node"}}}, "required": ["children"]}}, "$ref": "#/$defs/node"}"##,
    )
    .unwrap();
    let deep = format!(
        "{}{}{}",
        r#"{"children": ["#.repeat(60),
        r#"{"children": []}"#,
        "]}".repeat(60)
    );
    assert_eq!(errors(&tree, &deep, 5), vec![]);
    let broken = deep.replacen(r#"{"children": []}"#, "{}", 1);
    let found = errors(&tree, &broken, 5);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "/children/0".repeat(60));
    // a reference to itself is skipped, not followed forever
    let own = JsonSchema::new(br##"{"$ref": "#"}"##).unwrap();
    assert_eq!(errors(&own, "1", 5), vec![]);
}

#[test]
fn answers_nested_deeper_than_128_are_not_json() {
    let schema = JsonSchema::new(b"{}").unwrap();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let found = errors(&schema, &deep, 5);
    assert_eq!(found.len(), 1);
    assert!(found[0].1.contains("recursion limit"), "{found:?}");
    assert!(matches!(
        JsonSchema::new(deep.as_bytes()),
        Err(SchemaError::NotJson(_))
    ));
}

#[test]
fn messages_are_cut_at_the_bound() {
    let pattern = "ab".repeat(400);
    let schema = JsonSchema::new(format!(r#"{{"pattern": "^{pattern}$"}}"#).as_bytes()).unwrap();
    let found = schema.errors(b"\"nope\"", 5).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].message.len(), MAX_MESSAGE_BYTES);
    assert!(
        found[0].message.starts_with("value does not match \"^abab"),
        "{}",
        found[0].message
    );
    assert!(found[0].message.ends_with("..."), "{}", found[0].message);
}

/// Two `anyOf` branches that both follow a recursive `$ref` double the evaluations at each level of
/// the answer (unbounded, this answer nested 20 deep took a minute): past the budget the answer is
/// not checked, and measuring stops at the budget.
#[test]
fn a_schema_that_multiplies_along_the_answer_is_too_costly() {
    let schema = JsonSchema::new(
        br##"{"anyOf": [{"type": "array", "items": {"$ref": "#"}},
                        {"type": "array", "items": {"$ref": "#"}, "minItems": 1}]}"##,
    )
    .unwrap();
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let found = errors(&schema, &nested(3), 5);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "");
    match schema.errors(nested(40).as_bytes(), 5) {
        Err(SchemaError::TooCostly { budget }) => {
            assert_eq!(budget, BASE_STEPS + STEPS_PER_VALUE * 41)
        }
        other => panic!("expected TooCostly, got {other:?}"),
    }
    // the same shape with one recursive branch is linear: deep answers are checked
    let linear = JsonSchema::new(
        br##"{"anyOf": [{"type": "array", "items": {"$ref": "#"}}, {"type": "integer"}]}"##,
    )
    .unwrap();
    assert_eq!(errors(&linear, &nested(120), 5), vec![]);
    assert_eq!(
        errors(&linear, &nested(120).replace('1', "\"x\""), 5).len(),
        1
    );
}

#[test]
fn a_wide_schema_on_a_wide_answer_is_bounded_by_the_budget() {
    let branches = vec![r#"{"type": "integer"}"#; 2000].join(",");
    let schema = format!(r#"{{"items": {{"allOf": [{branches}]}}}}"#);
    let schema = JsonSchema::new(schema.as_bytes()).unwrap();
    assert_eq!(errors(&schema, "[1, 2, 3]", 5), vec![]);
    let wide = format!("[{}]", vec!["1"; 1000].join(","));
    assert!(matches!(
        schema.errors(wide.as_bytes(), 5),
        Err(SchemaError::TooCostly { .. })
    ));
}
