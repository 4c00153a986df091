//! The cost of checking a structured answer: a typical strict-mode schema of 10 properties (strings,
//! an enum, numbers, a bool, a date-time, an array of strings, a nested object, a nullable field)
//! and a 1 KiB answer that matches it. Measured: compiling the schema (once per distinct schema: the
//! Python side caches it), parsing the answer alone (serde_json, the floor), validating a valid
//! answer, and an invalid one (3 violations). Run: `cargo bench -p ferrogate_core --bench schema`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use _core::schema::cost::CostGraph;
use _core::schema::{JsonSchema, BASE_STEPS, STEPS_PER_VALUE};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "title": {"type": "string", "maxLength": 200},
    "summary": {"type": "string"},
    "category": {"type": "string", "enum": ["bug", "feature", "question", "docs"]},
    "priority": {"type": "integer", "minimum": 1, "maximum": 5},
    "score": {"type": "number"},
    "urgent": {"type": "boolean"},
    "due": {"type": "string", "format": "date-time"},
    "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z][a-z0-9-]*$"}, "maxItems": 10},
    "owner": {
      "type": "object",
      "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
      "required": ["name", "email"],
      "additionalProperties": false
    },
    "note": {"type": ["string", "null"]}
  },
  "required": ["title", "summary", "category", "priority", "score", "urgent", "due", "tags", "owner", "note"],
  "additionalProperties": false
}"#;

/// A valid answer of about 1 KiB.
fn answer() -> String {
    let summary = "The gateway retries a failed upstream call once before it fails over to the next \
                   deployment of the group; the retry budget caps how many retries a deployment sees. "
        .repeat(5);
    let answer = serde_json::json!({
        "title": "Retries should honour the Retry-After header of Anthropic upstreams",
        "summary": summary.trim_end(),
        "category": "bug",
        "priority": 2,
        "score": 0.875,
        "urgent": false,
        "due": "2025-07-01T12:00:00Z",
        "tags": ["routing", "retries", "anthropic", "rate-limits"],
        "owner": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "note": null
    });
    answer.to_string()
}

fn bench(c: &mut Criterion) {
    let valid = answer();
    assert!((900..1200).contains(&valid.len()), "{} bytes", valid.len());
    let invalid = valid
        .replace("\"bug\"", "\"bugs\"")
        .replace("\"priority\":2", "\"priority\":9")
        .replace("\"note\":null", "\"note\":1");
    let schema = JsonSchema::new(SCHEMA.as_bytes()).unwrap();
    assert!(schema.errors(valid.as_bytes(), 5).unwrap().is_empty());
    assert_eq!(schema.errors(invalid.as_bytes(), 5).unwrap().len(), 3);

    c.bench_function("schema_compile_10_properties", |b| {
        b.iter(|| black_box(JsonSchema::new(black_box(SCHEMA.as_bytes())).unwrap()))
    });
    let mut group = c.benchmark_group("schema_answer_1kib");
    group.throughput(Throughput::Bytes(valid.len() as u64));
    group.bench_function("parse_only", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(
                valid.as_bytes(),
            )))
        })
    });
    group.bench_function("valid", |b| {
        b.iter(|| black_box(schema.errors(black_box(valid.as_bytes()), 5)))
    });
    group.bench_function("invalid_3_errors", |b| {
        b.iter(|| black_box(schema.errors(black_box(invalid.as_bytes()), 5)))
    });
    group.finish();

    let mut group = c.benchmark_group("schema_worst_case_at_budget");
    let doubling = r##"{"anyOf": [{"type": "array", "items": {"$ref": "#"}},
                                  {"type": "array", "items": {"$ref": "#"}, "minItems": 1}]}"##;
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let deepest = under_budget(doubling, &nested, 1..128);
    let schema = JsonSchema::new(doubling.as_bytes()).unwrap();
    let answer = nested(deepest);
    assert!(schema.errors(answer.as_bytes(), 5).is_ok());
    assert!(schema.errors(nested(deepest + 1).as_bytes(), 5).is_err());
    group.bench_function(format!("anyof_doubling_depth_{deepest}"), |b| {
        b.iter(|| black_box(schema.errors(black_box(answer.as_bytes()), 5)))
    });
    let wide = format!(
        r#"{{"items": {{"allOf": [{}]}}}}"#,
        vec![r#"{"type": "integer"}"#; 2000].join(",")
    );
    let items = |n: usize| format!("[{}]", vec!["1"; n].join(","));
    let widest = under_budget(&wide, &items, 1..10_000);
    let schema = JsonSchema::new(wide.as_bytes()).unwrap();
    let answer = items(widest);
    assert!(schema.errors(answer.as_bytes(), 5).unwrap().is_empty());
    group.bench_function(format!("allof_2000_items_{widest}"), |b| {
        b.iter(|| black_box(schema.errors(black_box(answer.as_bytes()), 5)))
    });
    group.finish();
}

/// The largest `n` in `range` whose answer `make(n)` is within the budget of `schema`.
fn under_budget(
    schema: &str,
    make: &dyn Fn(usize) -> String,
    range: std::ops::Range<usize>,
) -> usize {
    let graph = CostGraph::new(&serde_json::from_str(schema).unwrap()).unwrap();
    let fits = |n: usize| {
        let answer: serde_json::Value = serde_json::from_str(&make(n)).unwrap();
        let values = count(&answer);
        graph
            .measure(&answer, BASE_STEPS + STEPS_PER_VALUE * values)
            .is_some()
    };
    range.take_while(|&n| fits(n)).last().unwrap()
}

fn count(value: &serde_json::Value) -> u64 {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(count).sum::<u64>(),
        serde_json::Value::Object(map) => 1 + map.values().map(count).sum::<u64>(),
        _ => 1,
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
