//! Structured outputs: a JSON schema compiled once and the answers validated against it.
//!
//! A client that asks for a JSON answer of a given shape (OpenAI chat `response_format.json_schema`,
//! Responses `text.format`, Anthropic `output_config.format`) sends a schema; the *respond* phase
//! checks the answer's text against it. [`JsonSchema::new`] compiles the schema's bytes (the Python
//! side caches the compiled schema by those bytes); [`JsonSchema::errors`] validates one answer and
//! returns at most `limit` [`Violation`]s, each the JSON pointer of the failing place in the answer
//! and a message. An answer that is not JSON is one violation at `""`; `[]` means valid.
//!
//! Validation is the [`jsonschema`] crate (drafts 4 to 2020-12, detected from `$schema`, 2020-12 by
//! default), built with its default features off and [`jsonschema::ValidationOptions::offline`]:
//! nothing is ever fetched, a `$ref` to another document is a schema error. `format` is asserted
//! (`date-time`, `email`, `uuid`...: what OpenAI's strict mode also enforces); unknown formats pass.
//!
//! # Pathological schemas
//!
//! The schema comes from the client, and the answer from a model it prompts. What the crate bounds:
//! - `$ref` cycles: a reference to itself is skipped and each target is compiled once (lazily for
//!   cycles), so any schema compiles in time linear in its size; nothing is fetched.
//!
//! What this module adds:
//! - the schema's size ([`MAX_SCHEMA_BYTES`]); the nesting of schema and answer (serde_json refuses
//!   documents nested deeper than 128);
//! - `pattern` and `patternProperties` on the `regex` engine (the crate's default, `fancy-regex`,
//!   backtracks), in time linear in the text, each compiled pattern capped at
//!   [`REGEX_SIZE_LIMIT`]; a pattern that needs backtracking (look-around, back-references) or is
//!   too large is a schema error;
//! - a work budget. The crate has none, and applicators that evaluate several subschemas against
//!   one value (`anyOf`, `oneOf`, `allOf`, `if`/`then`/`else`) over a recursive `$ref` multiply
//!   their branches along the answer's depth: a 100-byte schema and a 40-byte answer nested 20
//!   deep take a minute (`tests/schema.rs`). Before the validator runs, [`cost::CostGraph`] counts
//!   the evaluations a full validation could make (an upper bound, in time bounded by the budget
//!   itself); over [`BASE_STEPS`] + [`STEPS_PER_VALUE`] per value of the answer, the answer is not
//!   checked ([`SchemaError::TooCostly`]). An invalid answer whose errors would cost too much to
//!   collect (collecting re-evaluates each applicator's branches at every level) gets one violation
//!   at `""` instead of the list;
//! - messages: the answer's values are masked out of them ("value is not of type ..."), and each is
//!   cut at [`MAX_MESSAGE_BYTES`].
//!
//! What stays: validation is linear in the answer's size times the schema's, so a large schema
//! applied to every item of a large answer costs their product, up to the budget.
use jsonschema::{PatternOptions, Validator};
use serde_json::Value;

use crate::error::SchemaError;

pub mod cost;

use cost::CostGraph;

/// Largest schema accepted, in bytes of JSON (OpenAI's own limits keep real schemas far below it).
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;

/// Largest compiled `pattern` (the `regex` crate's size limit, in bytes of its program).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Largest lazy-DFA cache of one compiled `pattern`, in bytes.
pub const REGEX_DFA_LIMIT: usize = 1 << 20;

/// Evaluations (subschema, value) every answer may take, whatever its size.
pub const BASE_STEPS: u64 = 100_000;

/// Evaluations allowed per value of the answer, on top of [`BASE_STEPS`].
pub const STEPS_PER_VALUE: u64 = 64;

/// Longest violation message, in bytes (longer ones end with `...`).
pub const MAX_MESSAGE_BYTES: usize = 512;

/// One way an answer breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the failing value in the answer (`""`: the whole answer, `/items/0/name`).
    pub pointer: String,
    /// What is wrong, with the answer's values masked (`value is not of type "integer"`).
    pub message: String,
}

impl Violation {
    fn new(pointer: String, message: String) -> Self {
        Self {
            pointer,
            message: truncate(message, MAX_MESSAGE_BYTES),
        }
    }
}

/// A compiled JSON schema: build it once per distinct schema, validate any number of answers.
pub struct JsonSchema {
    validator: Validator,
    cost: CostGraph,
}

impl JsonSchema {
    /// Compiles the schema in `schema` (JSON bytes).
    ///
    /// # Errors
    /// [`SchemaError::TooLarge`] over [`MAX_SCHEMA_BYTES`], [`SchemaError::NotJson`] for bytes that
    /// are not one JSON document, and [`SchemaError::Invalid`] for a schema that does not compile
    /// (not a schema of its draft, an unresolvable or remote `$ref`, a bad or too large pattern).
    pub fn new(schema: &[u8]) -> Result<Self, SchemaError> {
        if schema.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooLarge {
                size: schema.len(),
                limit: MAX_SCHEMA_BYTES,
            });
        }
        let value: Value =
            serde_json::from_slice(schema).map_err(|e| SchemaError::NotJson(e.to_string()))?;
        Self::from_value(&value)
    }

    /// Compiles an already parsed schema (no size bound: the caller parsed it).
    ///
    /// # Errors
    /// [`SchemaError::Invalid`], as [`JsonSchema::new`].
    pub fn from_value(schema: &Value) -> Result<Self, SchemaError> {
        let patterns = PatternOptions::regex()
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_LIMIT);
        let validator = jsonschema::options()
            .offline()
            .with_pattern_options(patterns)
            .should_validate_formats(true)
            .build(schema)
            .map_err(|error| SchemaError::Invalid {
                pointer: error.instance_path().as_str().to_owned(),
                message: truncate(error.to_string(), MAX_MESSAGE_BYTES),
            })?;
        let cost = CostGraph::new(schema).map_err(|reference| SchemaError::Invalid {
            pointer: String::new(),
            message: format!("cannot bound the cost of {reference}"),
        })?;
        Ok(Self { validator, cost })
    }

    /// At most `limit` violations of the answer in `instance` (JSON bytes); `[]` when it is valid.
    ///
    /// An answer that is not JSON is one violation at `""` naming the parse error. A `limit` of 0
    /// reads as 1, so `[]` always means valid.
    ///
    /// # Errors
    /// [`SchemaError::TooCostly`]: checking this answer against this schema would take more than
    /// its budget of evaluations (the answer is not checked).
    pub fn errors(&self, instance: &[u8], limit: usize) -> Result<Vec<Violation>, SchemaError> {
        match serde_json::from_slice::<Value>(instance) {
            Ok(value) => self.errors_of(&value, limit),
            Err(error) => Ok(vec![Violation::new(
                String::new(),
                format!("the answer is not JSON: {error}"),
            )]),
        }
    }

    /// At most `limit` violations of a parsed answer (`limit` 0 reads as 1).
    ///
    /// # Errors
    /// [`SchemaError::TooCostly`], as [`JsonSchema::errors`].
    pub fn errors_of(&self, instance: &Value, limit: usize) -> Result<Vec<Violation>, SchemaError> {
        let (values, depth) = shape(instance);
        let budget = BASE_STEPS.saturating_add(STEPS_PER_VALUE.saturating_mul(values));
        let steps = self
            .cost
            .measure(instance, budget)
            .ok_or(SchemaError::TooCostly { budget })?;
        if self.validator.is_valid(instance) {
            return Ok(Vec::new()); // the common case, and the fast one: no error is built
        }
        if steps.saturating_mul(depth) > budget {
            let message =
                "the answer does not match the schema (its errors are too costly to list)";
            return Ok(vec![Violation::new(String::new(), message.to_owned())]);
        }
        Ok(self
            .validator
            .iter_errors(instance)
            .take(limit.max(1))
            .map(|error| {
                let pointer = error.instance_path().as_str().to_owned();
                Violation::new(pointer, error.masked().to_string())
            })
            .collect())
    }
}

/// The number of values in `value` (itself included) and how deep they nest (a scalar: 1).
fn shape(value: &Value) -> (u64, u64) {
    match value {
        Value::Array(items) => items
            .iter()
            .map(shape)
            .fold((1, 1), |(n, d), (cn, cd)| (n + cn, d.max(cd + 1))),
        Value::Object(map) => map
            .values()
            .map(shape)
            .fold((1, 1), |(n, d), (cn, cd)| (n + cn, d.max(cd + 1))),
        _ => (1, 1),
    }
}

/// `text` cut to at most `limit` bytes on a character boundary, ending with `...` when cut.
fn truncate(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("...");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("abc".to_owned(), 3), "abc");
        assert_eq!(truncate("abcdef".to_owned(), 5), "ab...");
        let cut = truncate("ééééé".to_owned(), 6); // 2 bytes each: 3 bytes left, one é fits
        assert_eq!(cut, "é...");
    }
}
