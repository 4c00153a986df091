//! Guardrail scanning: secrets, PII and deny patterns found in text, JSON bodies and streams.
//!
//! A [`Scanner`] compiles a list of [`RuleDef`]s once (per worker). A [`Policy`] pairs it with one
//! action byte per rule (0 off, 1 log, 2 redact, 3 block) and scans with it: [`Policy::find`] and
//! [`Policy::redact_text`] for a text, [`Policy::scan_json`] for a request body, and a
//! [`StreamRedactor`] per text channel of a streamed answer.
//!
//! How a scan runs: a prefilter finds every rule's keywords (SIMD passes over an ASCII-lowercased
//! copy); a rule's regex then runs only in windows around its keyword occurrences, or anchored at
//! each one when every match starts with a keyword; a rule without keywords runs around the bytes
//! every match of it holds (the digits of a phone number), or over the whole text; each match must contain a keyword and pass the rule's entropy, stopword, allowlist and
//! validator checks; overlapping candidates resolve to the stronger action, then the earlier and
//! longer one; overlapping masking candidates merge into one finding, so no part of any survives.
//! Text already redacted (`[REDACTED:<id>]`) is never found again, and a request's redacted text
//! is scanned again until clean ([`Scanner::redact_again`]). Every regex runs in time linear in
//! the text.
//!
//! - [`rule`]: [`RuleDef`], [`Category`], [`Validator`]: rules as plain data.
//! - [`builtin`]: the built-in rules.
//! - `compile`: one rule compiled (regex, allowlist, length bound); `anchor`: what its HIR tells
//!   the prefilter.
//! - `prefilter`, `search`, `merge`: the keyword pass, the search of a rule in a region, and
//!   overlap resolution.
//! - [`scanner`]: [`Scanner`]; [`policy`]: [`Policy`].
//! - [`entropy`], [`validate`]: Shannon entropy, Luhn and IBAN checks.
//! - [`json`]: the walk of a JSON body, with paths and a splice of only the redacted strings.
//! - [`stream`]: [`StreamRedactor`], exact redaction of a text arriving in pieces.
mod anchor;
pub mod builtin;
mod compile;
pub mod entropy;
pub mod json;
mod merge;
pub mod policy;
mod prefilter;
pub mod rule;
pub mod scanner;
mod search;
pub mod stream;
pub mod validate;

pub use compile::MAX_HOLD;
pub use json::{scan_json, JsonFinding, JsonScan};
pub use policy::Policy;
pub use rule::{Category, RuleDef, Validator};
pub use scanner::{Scanner, Scratch, BLOCK, LOG, MAX_ROUNDS, OFF, REDACT};
pub use search::PLACEHOLDER_OPEN;
pub use stream::StreamRedactor;

/// One finding: the byte span of a secret in the text scanned, and the index of its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Finding {
    /// Index of the rule in the scanner.
    pub rule: usize,
    /// Byte offset of the secret's start.
    pub start: usize,
    /// Byte offset just past the secret.
    pub end: usize,
}
