//! Token counts equal OpenAI's tokenizer: known counts from `tests/data/corpus_counts.json`
//! (produced with the `bpe_openai` PyPI package's tiktoken-compatible `encode_ordinary`) and a
//! cross-check against the `tiktoken-rs` crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use _core::tokens::{count_chat_prompt, count_tokens, Encoding};
use serde::Deserialize;

#[derive(Deserialize)]
struct Row {
    text: String,
    o200k_base: usize,
    cl100k_base: usize,
}

fn corpus() -> Vec<Row> {
    serde_json::from_str(include_str!("data/corpus_counts.json")).unwrap()
}

#[test]
fn known_counts() {
    assert_eq!(count_tokens("hello world", "o200k_base"), Ok(2));
    assert_eq!(count_tokens("hello world", "cl100k_base"), Ok(2));
    for row in corpus() {
        assert_eq!(
            count_tokens(&row.text, "o200k_base"),
            Ok(row.o200k_base),
            "{:?}",
            row.text
        );
        assert_eq!(
            count_tokens(&row.text, "cl100k_base"),
            Ok(row.cl100k_base),
            "{:?}",
            row.text
        );
    }
}

#[test]
fn whole_corpus_matches_tiktoken_rs() {
    let text: String = corpus()
        .into_iter()
        .map(|row| row.text)
        .collect::<Vec<_>>()
        .join("\n");
    let o200k = tiktoken_rs::o200k_base_singleton();
    let cl100k = tiktoken_rs::cl100k_base_singleton();
    assert_eq!(
        Encoding::O200kBase.count(&text),
        o200k.encode_ordinary(&text).len()
    );
    assert_eq!(
        Encoding::Cl100kBase.count(&text),
        cl100k.encode_ordinary(&text).len()
    );
}

#[test]
fn counts_are_consistent_across_threads() {
    let text = "Mixed 中文 English 日本語 text, counted from many threads at once.";
    let expected = Encoding::O200kBase.count(text);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| Encoding::O200kBase.count(text)))
            .collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap(), expected);
        }
    });
}

#[test]
fn chat_prompt_follows_the_cookbook_rule() {
    // From OpenAI's cookbook example conversation: system + user, gpt-4o style overhead.
    let body = br#"{"model":"gpt-4o","messages":[
        {"role":"system","content":"You are a helpful, pattern-following assistant."},
        {"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
        {"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}
    ]}"#;
    let o200k = |text: &str| Encoding::O200kBase.count(text);
    let expected = 3
        + 3 + o200k("system") + o200k("You are a helpful, pattern-following assistant.")
        + 3 + o200k("system") + 1 + o200k("example_user") + o200k("New synergies will help drive top-line growth.")
        + 3 + o200k("user") + o200k("This late pivot means we don't have time to boil the ocean for the client deliverable.");
    assert_eq!(count_chat_prompt(body, "o200k_base"), Ok(expected));
}
