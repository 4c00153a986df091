//! Which bundled encoding a model name uses.
//!
//! Used by the *limit* phase to pick the encoding for a request's model. Provider prefixes
//! (`openai/gpt-4o`) and fine-tune prefixes (`ft:gpt-4o-mini:org::id`) are looked through. A
//! model we have no tokenizer for gets `o200k_base` as a cheap estimate, flagged as such.

use super::Encoding;

/// The encoding for a model, and whether it is only an estimate (unknown model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelEncoding {
    /// The encoding to count with.
    pub encoding: Encoding,
    /// `true` when the model is not a known OpenAI model and the count is an estimate.
    pub estimate: bool,
}

/// Model name prefixes per encoding, longest families first (`gpt-4o` before `gpt-4`).
const PREFIXES: &[(&str, Encoding)] = &[
    ("gpt-4o", Encoding::O200kBase),
    ("chatgpt-4o", Encoding::O200kBase),
    ("gpt-4.1", Encoding::O200kBase),
    ("gpt-4.5", Encoding::O200kBase),
    ("gpt-5", Encoding::O200kBase),
    ("gpt-oss", Encoding::O200kBase),
    ("o1", Encoding::O200kBase),
    ("o3", Encoding::O200kBase),
    ("o4", Encoding::O200kBase),
    ("codex-", Encoding::O200kBase),
    ("gpt-4", Encoding::Cl100kBase),
    ("gpt-3.5", Encoding::Cl100kBase),
    ("gpt-35", Encoding::Cl100kBase),
    ("text-embedding-3", Encoding::Cl100kBase),
    ("text-embedding-ada-002", Encoding::Cl100kBase),
];

/// The encoding for `model`, with the estimate flag.
pub fn model_encoding(model: &str) -> ModelEncoding {
    let name = model.rsplit('/').next().unwrap_or(model);
    let name = name.strip_prefix("ft:").unwrap_or(name);
    for (prefix, encoding) in PREFIXES {
        if name.starts_with(prefix) {
            return ModelEncoding {
                encoding: *encoding,
                estimate: false,
            };
        }
    }
    ModelEncoding {
        encoding: Encoding::O200kBase,
        estimate: true,
    }
}

/// The name of the encoding for `model` (`o200k_base` for unknown models, as an estimate; see
/// [`model_encoding`] for the flag).
pub fn encoding_for_model(model: &str) -> &'static str {
    model_encoding(model).encoding.name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models() {
        let table = [
            ("gpt-4o", "o200k_base"),
            ("gpt-4o-mini-2024-07-18", "o200k_base"),
            ("gpt-4.1-nano", "o200k_base"),
            ("gpt-5", "o200k_base"),
            ("o1-preview", "o200k_base"),
            ("o3-mini", "o200k_base"),
            ("o4-mini", "o200k_base"),
            ("gpt-4", "cl100k_base"),
            ("gpt-4-turbo", "cl100k_base"),
            ("gpt-3.5-turbo", "cl100k_base"),
            ("text-embedding-3-small", "cl100k_base"),
            ("openai/gpt-4o", "o200k_base"),
            ("ft:gpt-3.5-turbo:org::abc", "cl100k_base"),
        ];
        for (model, expected) in table {
            assert_eq!(encoding_for_model(model), expected, "{model}");
            assert!(!model_encoding(model).estimate, "{model}");
        }
    }

    #[test]
    fn unknown_model_is_an_o200k_estimate() {
        let found = model_encoding("claude-3-5-sonnet");
        assert_eq!(found.encoding, Encoding::O200kBase);
        assert!(found.estimate);
        assert_eq!(encoding_for_model(""), "o200k_base");
    }
}
