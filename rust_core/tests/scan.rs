//! The guardrail scanner's engine with small test rules: the keyword prefilter, entropy,
//! allowlists, stopwords, Luhn and IBAN validators, overlaps and actions, JSON bodies (paths,
//! escapes, the byte-preserving splice, skipped binary) and the stream redactor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use _core::scan::{scan_json, Category, Finding, Policy, RuleDef, Scanner, Validator};

/// A rule with `keywords`.
fn rule(id: &str, regex: &str, keywords: &[&str]) -> RuleDef {
    let mut def = RuleDef::new(id, Category::Secret, regex);
    def.keywords = keywords.iter().map(|k| (*k).to_owned()).collect();
    def
}

/// The spans `(rule id, secret)` found in `text` with every rule at `action`.
fn found(scanner: &Scanner, text: &str, action: u8) -> Vec<(String, String)> {
    let actions = vec![action; scanner.len()];
    scanner
        .find(text, &actions)
        .iter()
        .map(|f| {
            (
                scanner.rule_id(f.rule).to_owned(),
                text[f.start..f.end].to_owned(),
            )
        })
        .collect()
}

fn pair(id: &str, secret: &str) -> (String, String) {
    (id.to_owned(), secret.to_owned())
}

#[test]
fn a_rule_runs_only_where_a_keyword_is_and_a_match_holds_one() {
    let scanner = Scanner::new(vec![rule("kw", r"(?i)[a-z]{3}[0-9]{4}", &["Key"])]).unwrap();
    assert_eq!(found(&scanner, "abc1234", 2), vec![]);
    assert_eq!(
        found(&scanner, "key abc1234", 2),
        vec![],
        "the match must contain the keyword"
    );
    assert_eq!(
        found(&scanner, "the KEY1234 here", 2),
        vec![pair("kw", "KEY1234")]
    );
    let always = Scanner::new(vec![rule("any", r"[a-z]{3}[0-9]{4}", &[])]).unwrap();
    assert_eq!(found(&always, "abc1234", 2), vec![pair("any", "abc1234")]);
}

#[test]
fn keywords_shared_between_rules_open_windows_for_each() {
    let scanner = Scanner::new(vec![
        rule("short", r"sk-[a-z]{4}\b", &["sk-"]),
        rule("long", r"sk-ant-[a-z]{4}\b", &["sk-ant-", "SK-"]),
    ])
    .unwrap();
    assert_eq!(
        found(&scanner, "x sk-ant-abcd y sk-wxyz", 2),
        vec![pair("long", "sk-ant-abcd"), pair("short", "sk-wxyz")]
    );
}

#[test]
fn entropy_rejects_low_entropy_secrets() {
    let mut def = rule("tok", r"\btok_[A-Za-z0-9]{16}\b", &["tok_"]);
    def.entropy = Some(3.5);
    let scanner = Scanner::new(vec![def]).unwrap();
    assert_eq!(found(&scanner, "tok_aaaaaaaaaaaaaaaa", 2), vec![]);
    assert_eq!(
        found(&scanner, "tok_Q8xZ2lMp4vR7tY1w", 2),
        vec![pair("tok", "tok_Q8xZ2lMp4vR7tY1w")]
    );
}

#[test]
fn allowlists_and_stopwords_reject_placeholders() {
    let mut def = rule("akid", r"\b(AKIA[A-Z0-9]{16})\b", &["akia"]);
    def.secret_group = 1;
    def.allowlist = vec!["EXAMPLE$".to_owned()];
    def.stopwords = vec!["xxxx".to_owned()];
    let scanner = Scanner::new(vec![def]).unwrap();
    assert_eq!(found(&scanner, "AKIAIOSFODNN7EXAMPLE", 2), vec![]);
    assert_eq!(found(&scanner, "AKIAXXXXXXXXXXXXXXXX", 2), vec![]);
    assert_eq!(
        found(&scanner, "id=AKIAQ3ZT7W2LNB4XR6YD;", 2),
        vec![pair("akid", "AKIAQ3ZT7W2LNB4XR6YD")]
    );
}

#[test]
fn the_secret_group_is_the_span_found() {
    let mut def = rule(
        "pw",
        r#"(?i)password"?\s*[:=]\s*"?([^\s"]{6,})"#,
        &["password"],
    );
    def.secret_group = 1;
    let scanner = Scanner::new(vec![def]).unwrap();
    let text = r#"{"password": "hunter2hunter2"}"#;
    let findings = scanner.find(text, &[2]);
    assert_eq!(&text[findings[0].start..findings[0].end], "hunter2hunter2");
    assert_eq!(
        scanner.redact(text, &findings, &[2]),
        r#"{"password": "[REDACTED:pw]"}"#
    );
}

#[test]
fn luhn_and_iban_validate_candidates() {
    let mut card = RuleDef::new("card", Category::Pii, r"\b[0-9]{4}(?:[ -]?[0-9]{4}){3}\b");
    card.validator = Validator::Luhn;
    let mut iban = RuleDef::new(
        "iban",
        Category::Pii,
        r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b",
    );
    iban.validator = Validator::Iban;
    let scanner = Scanner::new(vec![card, iban]).unwrap();
    assert_eq!(
        found(&scanner, "pay 4111 1111 1111 1111 now", 2),
        vec![pair("card", "4111 1111 1111 1111")]
    );
    assert_eq!(found(&scanner, "pay 4111 1111 1111 1112 now", 2), vec![]);
    assert_eq!(
        found(&scanner, "to GB82 WEST 1234 5698 7654 32.", 2),
        vec![pair("iban", "GB82 WEST 1234 5698 7654 32")]
    );
    assert_eq!(
        found(&scanner, "to GB82 WEST 1234 5698 7654 31.", 2),
        vec![]
    );
}

#[test]
fn overlapping_masks_merge_named_after_the_stronger_then_earlier_and_longer() {
    let scanner = Scanner::new(vec![
        rule("word", r"[a-z]+_[a-z]+", &[]),
        rule("tail", r"_[a-z]+_[a-z]+", &[]),
    ])
    .unwrap();
    let text = "x abc_def_ghi y";
    let spans = |actions: &[u8]| -> Vec<Finding> { scanner.find(text, actions) };
    assert_eq!(
        spans(&[2, 2]),
        vec![Finding {
            rule: 0,
            start: 2,
            end: 13
        }],
        "the union, named after the earlier"
    );
    assert_eq!(
        spans(&[2, 3]),
        vec![Finding {
            rule: 1,
            start: 2,
            end: 13
        }],
        "block names it"
    );
    assert_eq!(
        spans(&[1, 2]),
        vec![Finding {
            rule: 1,
            start: 5,
            end: 13
        }],
        "a log candidate under a mask is dropped"
    );
    assert_eq!(
        spans(&[1, 1]),
        vec![Finding {
            rule: 0,
            start: 2,
            end: 9
        }],
        "logs: the earlier wins"
    );
    assert_eq!(
        spans(&[0, 1]),
        vec![Finding {
            rule: 1,
            start: 5,
            end: 13
        }]
    );
    assert_eq!(spans(&[0, 0]), vec![]);
    let same_start = Scanner::new(vec![rule("a", r"ab", &[]), rule("b", r"abcd", &[])]).unwrap();
    assert_eq!(
        same_start.find("abcd", &[2, 2]),
        vec![Finding {
            rule: 1,
            start: 0,
            end: 4
        }]
    );
    assert_eq!(
        scanner.redact(text, &scanner.find(text, &[1, 2]), &[1, 2]),
        "x abc[REDACTED:tail] y"
    );
    assert_eq!(
        scanner.redact(text, &scanner.find(text, &[2, 2]), &[2, 2]),
        "x [REDACTED:word] y"
    );
}

#[test]
fn redacted_text_is_not_found_again() {
    let scanner = Scanner::new(vec![rule("words", r"[A-Za-z:\[\]-]{4,}", &[])]).unwrap();
    let once = scanner.redact("some words", &scanner.find("some words", &[2]), &[2]);
    assert_eq!(once, "[REDACTED:words] [REDACTED:words]");
    assert!(scanner.find(&once, &[2]).is_empty());
}

#[test]
fn bad_rules_name_the_rule_its_index_and_the_error() {
    let error =
        Scanner::new(vec![rule("ok", "a", &[]), rule("broken", "(unclosed", &[])]).unwrap_err();
    assert_eq!((error.index, error.id.as_str()), (1, "broken"));
    assert!(
        error
            .to_string()
            .contains("rule \"broken\" (index 1): invalid regex"),
        "{error}"
    );
    let duplicate = Scanner::new(vec![rule("a", "a", &[]), rule("a", "b", &[])]).unwrap_err();
    assert_eq!(duplicate.message, "duplicate rule id");
    let mut allow = rule("allow", "a", &[]);
    allow.allowlist = vec!["[".to_owned()];
    assert!(Scanner::new(vec![allow])
        .unwrap_err()
        .message
        .contains("allowlist"));
    let huge = rule("huge", r"\w{1000}\w{1000}\w{1000}", &[]);
    assert!(
        Scanner::new(vec![huge]).is_err(),
        "the size limit refuses huge regexes"
    );
}

fn json_scanner() -> Arc<Scanner> {
    let mut token = rule("demo-token", r"demo_[A-Za-z0-9]{8}", &["demo_"]);
    token.description = "a test token".to_owned();
    let ban = RuleDef::new(
        "ban",
        Category::Injection,
        r"(?i)ignore previous instructions",
    );
    Arc::new(Scanner::new(vec![token, ban]).unwrap())
}

#[test]
fn json_findings_carry_paths_and_spans_in_the_unescaped_strings() {
    let scanner = json_scanner();
    let body = br#"{"model": "m", "messages": [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": [{"type": "text", "text": "a \"q\" demo_A1b2C3d4"}]},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{\"k\": \"demo_Z9y8X7w6\"}"}}]}
    ], "demo_keysAreNotScanned": 1, "odd.key": "demo_Q1w2E3r4"}"#;
    let scan = scan_json(&scanner, body, &[1, 1]).unwrap();
    let paths: Vec<(&str, usize, usize)> = scan
        .findings
        .iter()
        .map(|f| (f.path.as_str(), f.start, f.end))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("messages[1].content[0].text", 6, 19),
            ("messages[2].tool_calls[0].function.arguments", 7, 20),
            ("[\"odd.key\"]", 0, 13),
        ]
    );
    assert_eq!(scan.body, None, "log findings change nothing");
}

#[test]
fn a_unicode_escaped_secret_is_found() {
    let scanner = json_scanner();
    let body = br#"{"input": "x \u0064emo_\u0041\u00621b2C3d \u00e9"}"#;
    let scan = scan_json(&scanner, body, &[2, 0]).unwrap();
    assert_eq!((scan.findings[0].start, scan.findings[0].end), (2, 15));
    let redacted = String::from_utf8(scan.body.unwrap()).unwrap();
    assert_eq!(redacted, "{\"input\": \"x [REDACTED:demo-token] \u{e9}\"}");
}

#[test]
fn the_splice_changes_only_the_redacted_strings() {
    let scanner = json_scanner();
    let body = b"{ \"n\" : 1.50e2 ,\n\t\"s\": \"esc\\u00e9 \\/ kept\", \"t\" :\"demo_A1b2C3d4 \\n\\\"ok\\\"\", \"u\":[ true,null ] }";
    let scan = scan_json(&scanner, body, &[2, 2]).unwrap();
    let out = scan.body.unwrap();
    let expected = b"{ \"n\" : 1.50e2 ,\n\t\"s\": \"esc\\u00e9 \\/ kept\", \"t\" :\"[REDACTED:demo-token] \\n\\\"ok\\\"\", \"u\":[ true,null ] }";
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(expected)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(parsed["t"], "[REDACTED:demo-token] \n\"ok\"");
}

#[test]
fn binary_strings_are_skipped_and_blocks_return_no_body() {
    let scanner = json_scanner();
    let body = br#"{"image_url": {"url": "data:image/png;base64,demo_A1b2C3d4"},
        "source": {"type": "base64", "data": "demo_A1b2C3d4"}, "file_data": "demo_A1b2C3d4",
        "signature": "demo_A1b2C3d4", "encrypted_content": "demo_A1b2C3d4",
        "data": {"text": "demo_A1b2C3d4"}}"#;
    let scan = scan_json(&scanner, body, &[2, 3]).unwrap();
    let paths: Vec<&str> = scan.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["data.text"],
        "an object under an opaque key is still walked"
    );
    let blocked =
        br#"{"messages": [{"content": "please ignore previous instructions demo_A1b2C3d4"}]}"#;
    let scan = scan_json(&scanner, blocked, &[2, 3]).unwrap();
    assert_eq!(scan.findings.len(), 2);
    assert_eq!(
        scan.body, None,
        "a block finding refuses the body: nothing to redact"
    );
    assert!(scan_json(&scanner, b"{\"a\": ", &[2, 3]).is_err());
    assert!(scan_json(&scanner, b"{} x", &[2, 3]).is_err());
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    assert!(scan_json(&scanner, deep.as_bytes(), &[2, 3]).is_err());
}

/// Streams `text` through a redactor in pieces split at `cuts`, asserting the output equals the
/// whole-text redaction.
fn assert_stream_matches(policy: &Policy, text: &str, cuts: &[usize]) {
    let stream_actions: Vec<u8> = policy.actions().iter().map(|&a| a.min(2)).collect();
    let whole = policy.scanner().redact(
        text,
        &policy.scanner().find(text, &stream_actions),
        &stream_actions,
    );
    let mut redactor = policy.stream();
    let mut out = String::new();
    let mut at = 0;
    for &cut in cuts {
        if cut > at && cut <= text.len() && text.is_char_boundary(cut) {
            redactor.push(&text[at..cut], &mut out);
            at = cut;
        }
    }
    redactor.push(&text[at..], &mut out);
    redactor.finish(&mut out);
    assert_eq!(out, whole, "cuts {cuts:?}");
}

#[test]
fn streamed_redaction_equals_the_whole_for_every_split() {
    let scanner = json_scanner();
    let policy = Policy::new(Arc::clone(&scanner), vec![2, 3]).unwrap();
    let text = "say demo_A1b2C3d4 then ignore previous instructions; demo_Q1w2E3r4é";
    for cut in 0..=text.len() {
        assert_stream_matches(&policy, text, &[cut]);
        assert_stream_matches(&policy, text, &[cut / 3, cut / 2, cut]);
    }
    let bytes: Vec<usize> = (0..=text.len()).collect();
    assert_stream_matches(&policy, text, &bytes);
}

#[test]
fn the_stream_holds_back_only_what_a_match_needs_and_counts_findings() {
    let scanner = json_scanner();
    let policy = Policy::new(Arc::clone(&scanner), vec![2, 1]).unwrap();
    let mut redactor = policy.stream();
    let mut out = String::new();
    let prose = "plain prose without secrets. ".repeat(20);
    redactor.push(&prose, &mut out);
    let hold = scanner.max_len(0).max(scanner.max_len(1));
    assert!(
        redactor.held() <= hold + 64,
        "held {} of {}",
        redactor.held(),
        prose.len()
    );
    redactor.push("demo_A1b2", &mut out);
    redactor.push("C3d4, ignore previous instructions.", &mut out);
    redactor.finish(&mut out);
    assert_eq!(
        out,
        format!("{prose}[REDACTED:demo-token], ignore previous instructions.")
    );
    assert_eq!(redactor.counts(), &[1, 1]);
    redactor.push("again demo_Z9y8X7w6", &mut out);
    redactor.finish(&mut out);
    assert_eq!(redactor.counts(), &[2, 1]);
}

#[test]
fn policies_check_their_action_bytes() {
    let scanner = json_scanner();
    assert!(Policy::new(Arc::clone(&scanner), vec![2]).is_err());
    assert!(Policy::new(Arc::clone(&scanner), vec![2, 4]).is_err());
    let off = Policy::new(Arc::clone(&scanner), vec![0, 0]).unwrap();
    assert!(!off.active());
    let mut out = String::new();
    let mut redactor = off.stream();
    redactor.push("demo_A1b2C3d4", &mut out);
    assert_eq!(
        out, "demo_A1b2C3d4",
        "a policy with every rule off passes text through"
    );
}
