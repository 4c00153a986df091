//! OpenAI tokenizers and the chat prompt overhead rule, for the *limit* phase (TPM estimates
//! from the counted prompt) and the *account* phase (completion tokens when the upstream sends
//! no usage).
//!
//! Both encodings, `o200k_base` and `cl100k_base`, are bundled in the binary (the
//! `bpe-openai` crate embeds them at build time; nothing is downloaded at run time). Each
//! encoder is built once, lazily, on first use, behind a thread-safe `LazyLock`. Counts equal
//! those of OpenAI's `tiktoken` `encode_ordinary` (special-token text is counted as text).
//!
//! - [`Encoding`]: the bundled encodings; [`count_tokens`] counts a text by encoding name.
//! - [`model`]: which encoding a model name uses ([`encoding_for_model`]).
//! - [`chat`]: the tokens of an OpenAI chat request's messages ([`count_chat_prompt`]).

pub mod chat;
pub mod model;

use std::fmt;
use std::str::FromStr;

use crate::error::TokenError;

pub use chat::count_chat_prompt;
pub use model::{encoding_for_model, model_encoding, ModelEncoding};

/// One of the bundled OpenAI encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `o200k_base`: gpt-4o, gpt-4.1, gpt-5, o-series.
    O200kBase,
    /// `cl100k_base`: gpt-4, gpt-3.5-turbo, text-embedding-3.
    Cl100kBase,
}

impl Encoding {
    /// Every bundled encoding.
    pub const ALL: [Self; 2] = [Self::O200kBase, Self::Cl100kBase];

    /// The encoding's name as OpenAI spells it (`"o200k_base"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::O200kBase => "o200k_base",
            Self::Cl100kBase => "cl100k_base",
        }
    }

    /// The encoding called `name`, or [`TokenError::UnknownEncoding`].
    pub fn from_name(name: &str) -> Result<Self, TokenError> {
        match name {
            "o200k_base" => Ok(Self::O200kBase),
            "cl100k_base" => Ok(Self::Cl100kBase),
            _ => Err(TokenError::UnknownEncoding(name.to_owned())),
        }
    }

    /// Counts the tokens of `text` (the first call per encoding builds the encoder).
    pub fn count(self, text: &str) -> usize {
        if text.is_empty() {
            return 0;
        }
        self.tokenizer().count(text)
    }

    fn tokenizer(self) -> &'static bpe_openai::Tokenizer {
        match self {
            Self::O200kBase => bpe_openai::o200k_base(),
            Self::Cl100kBase => bpe_openai::cl100k_base(),
        }
    }
}

impl FromStr for Encoding {
    type Err = TokenError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::from_name(name)
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counts the tokens of `text` in the encoding called `encoding`.
pub fn count_tokens(text: &str, encoding: &str) -> Result<usize, TokenError> {
    Ok(Encoding::from_name(encoding)?.count(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_world_is_two_tokens_in_both_encodings() {
        for encoding in Encoding::ALL {
            assert_eq!(encoding.count("hello world"), 2, "{encoding}");
        }
    }

    #[test]
    fn empty_text_is_zero_tokens() {
        assert_eq!(count_tokens("", "o200k_base"), Ok(0));
    }

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for encoding in Encoding::ALL {
            assert_eq!(encoding.name().parse::<Encoding>(), Ok(encoding));
        }
        assert_eq!(
            count_tokens("x", "p50k_base"),
            Err(TokenError::UnknownEncoding("p50k_base".to_owned()))
        );
    }
}
