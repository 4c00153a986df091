//! Build script: the bundled tokenizers' dictionaries without the two automata counting never uses.
//!
//! `bpe-openai` embeds each encoding as one serialised `bpe::BytePairEncoding`, and loading it builds three
//! Aho-Corasick automata over all of its tokens: the longest-match one (what `count` and `encode` walk) and the
//! two overlapping ones (forward and reversed) of the appendable and prependable encoders, which this crate does
//! not use. Those two are ~30 MB of an o200k_base tokenizer's ~65 MB in memory, in every worker. This script takes
//! the crate's own dictionaries, puts a one-pattern automaton in place of those two, empties the bytes -> token
//! map (lookups by bytes, not counting, read it) and writes the result to
//! `OUT_DIR/<encoding>.dict`, which `src/tokens/mod.rs` loads instead. The counts are the same by construction
//! (the fields counting reads are copied unchanged); `tokens::tests` checks them against `bpe-openai`'s.
#![allow(clippy::expect_used, missing_docs)] // a build script: a failure here is a failed build, said plainly

use std::collections::HashMap;
use std::env;
use std::fmt;
use std::fs;
use std::path::PathBuf;

use aneubeck_daachorse::DoubleArrayAhoCorasick;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `bpe::byte_pair_encoding::BytePairEncoding`'s serialised fields, in its order (a MessagePack array); the
/// automata are opaque bytes here.
#[derive(Serialize, Deserialize)]
struct Dict {
    all_tokens: Vec<u8>,
    token_starts: Vec<u32>,
    bytes_hash_to_token: HashMap<u32, u32>,
    split_table: Vec<(u32, u32)>,
    pair_lookup: HashMap<(u32, u32), u32>,
    longest_searcher: Bytes,
    overlapping_searcher: Bytes,
    overlapping_searcher_rev: Bytes,
    next_prefix_match: Vec<u32>,
    hash_factor: u64,
}

/// A MessagePack `bin` value (how `bpe` writes an automaton).
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(Bytes(out))
            }
        }
        d.deserialize_bytes(V)
    }
}

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // One pattern no UTF-8 text holds (0xFF): an automaton that is valid and never matches.
    let unused = DoubleArrayAhoCorasick::<u32>::new([[0xFFu8]])
        .expect("a one-pattern automaton builds")
        .serialize();
    for (name, tokenizer) in [
        ("o200k_base", bpe_openai::o200k_base()),
        ("cl100k_base", bpe_openai::cl100k_base()),
    ] {
        let full = rmp_serde::to_vec(&tokenizer.bpe).expect("bpe-openai's dictionary serialises");
        let mut dict: Dict = rmp_serde::from_slice(&full)
            .expect("bpe's dictionary has the fields this script names");
        dict.overlapping_searcher = Bytes(unused.clone());
        dict.overlapping_searcher_rev = Bytes(unused.clone());
        dict.bytes_hash_to_token.clear(); // bytes -> token, read by `token_id` lookups only, not by counting
        let lean = rmp_serde::to_vec(&dict).expect("the dictionary serialises");
        fs::write(out.join(format!("{name}.dict")), lean).expect("OUT_DIR is writable");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
