//! OpenAI tokenizers and the chat prompt overhead rule, for the *limit* phase (TPM estimates
//! from the counted prompt) and the *account* phase (completion tokens when the upstream sends
//! no usage).
//!
//! Both encodings, `o200k_base` and `cl100k_base`, are bundled in the binary (the
//! `bpe-openai` crate's dictionaries, nothing downloaded at run time), each without the two
//! automata counting never uses (`build.rs`: an o200k_base tokenizer takes ~30 MB of memory
//! instead of ~65 MB). Each encoder is built once, lazily, on first use, behind a thread-safe
//! `LazyLock`, with `bpe-openai`'s pre-tokenizer patterns. Counts equal those of `bpe-openai`
//! and of OpenAI's `tiktoken` `encode_ordinary` (special-token text is counted as text).
//!
//! - [`Encoding`]: the bundled encodings; [`count_tokens`] counts a text by encoding name.
//! - [`model`]: which encoding a model name uses ([`encoding_for_model`]).
//! - [`chat`]: the tokens of an OpenAI chat request's messages ([`count_chat_prompt`]).

pub mod chat;
pub mod model;
mod pages;

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use bpe_openai::Tokenizer;

use crate::error::TokenError;

/// o200k_base's pre-tokenizer, as `bpe-openai` writes tiktoken's pattern: its negative look-ahead
/// `\s+(?!\S)` is the second pattern, a look-ahead whose last character is dropped.
const O200K_PATTERN: &str = concat!(
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|\\p{N}{1,3}",
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*",
    "|\\s*[\\r\\n]+",
    "|\\s+$",
);
/// cl100k_base's pre-tokenizer (the same look-ahead rewrite).
const CL100K_PATTERN: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+$";

static O200K_BASE: LazyLock<Tokenizer> = LazyLock::new(|| {
    lean(
        include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.dict")),
        O200K_PATTERN,
    )
});
static CL100K_BASE: LazyLock<Tokenizer> = LazyLock::new(|| {
    lean(
        include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_base.dict")),
        CL100K_PATTERN,
    )
});

/// A tokenizer over one of build.rs's dictionaries, pre-tokenized as `bpe-openai` does; the dictionary's pages
/// are given back once it is copied into the tokenizer's tables ([`pages::release`]).
#[allow(clippy::expect_used)] // both inputs are this build's constants: a failure is a broken build
fn lean(dict: &'static [u8], pattern: &str) -> Tokenizer {
    let bpe = rmp_serde::from_slice(dict).expect("build.rs wrote a valid dictionary");
    pages::release(dict);
    Tokenizer::new_lookahead(
        bpe,
        &[(pattern, false), ("\\s+\\s", true), ("\\s+", false)],
        false,
    )
    .expect("bpe-openai's patterns compile")
}

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

    fn tokenizer(self) -> &'static Tokenizer {
        match self {
            Self::O200kBase => &O200K_BASE,
            Self::Cl100kBase => &CL100K_BASE,
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

    fn bpe_openai(encoding: Encoding) -> &'static Tokenizer {
        match encoding {
            Encoding::O200kBase => bpe_openai::o200k_base(),
            Encoding::Cl100kBase => bpe_openai::cl100k_base(),
        }
    }

    /// The lean dictionaries (build.rs) count exactly as `bpe-openai`'s full ones.
    #[test]
    fn lean_tokenizers_count_as_bpe_openai() {
        let corpus = [
            "hello world",
            "You are a helpful assistant. Answer in two sentences: why is the sky blue?",
            "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n\n\t  trailing   ",
            "Ünïcödé, 日本語のテキスト, emoji 🎉🚀 and RTL שלום עולם",
            "1234567890 3.14159 0xDEADBEEF 2026-12-06T21:00:00Z",
            "I'm sure they'll've done it; it's John's, isn't it? WE'RE HERE",
            "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
            "    \n\n\r\n   \u{a0}\u{2003}x",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ];
        for encoding in Encoding::ALL {
            for text in corpus {
                assert_eq!(
                    encoding.count(text),
                    bpe_openai(encoding).count(text),
                    "{encoding}: {text:?}"
                );
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn lean_tokenizers_count_as_bpe_openai_on_any_text(text in "\\PC{0,200}") {
            for encoding in Encoding::ALL {
                proptest::prop_assert_eq!(encoding.count(&text), bpe_openai(encoding).count(text.as_str()));
            }
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
