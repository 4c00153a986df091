//! Properties of the guardrail scanner, with tricky test rules (word boundaries, anchors,
//! secret groups, empty matches, an unbounded regex, an entropy-only rule) and with the built-in
//! rules: each rule alone finds what its definition says (the regex over the whole text: the
//! prefilter only skips text where it cannot match), scanning any text never panics, a redacted text ([`Policy::redact_text`]) has no
//! finding left, and streamed redaction gives the whole text's redaction for every split.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, LazyLock};

use _core::scan::{builtin, entropy, validate, Category, Policy, RuleDef, Scanner};
use proptest::prelude::*;

fn rule(id: &str, regex: &str, keywords: &[&str]) -> RuleDef {
    let mut def = RuleDef::new(id, Category::Custom, regex);
    def.keywords = keywords.iter().map(|k| (*k).to_owned()).collect();
    def
}

static TEST_RULES: LazyLock<Arc<Scanner>> = LazyLock::new(|| {
    let mut group = rule("grp", r"(?i)pass(?:word)?\s*[:=]\s*(\S{3,12})", &["pass"]);
    group.secret_group = 1;
    let mut entropy = rule("ent", r"[A-Za-z0-9]{10,16}", &[]);
    entropy.entropy = Some(3.2);
    let mut stop = rule("stop", r"\bsk-[a-z0-9]{6}\b", &["SK-"]);
    stop.stopwords = vec!["xx".to_owned()];
    stop.allowlist = vec!["^sk-0".to_owned()];
    Arc::new(
        Scanner::new(vec![
            rule("tok", r"\btok_[a-z0-9]{4,8}\b", &["tok_"]),
            group,
            rule("digits", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b", &[]),
            rule("anchor", r"(?m)^key:[a-z]{2,6}$", &["key:"]),
            rule("empty", r"z*", &[]),
            rule("open", r"BEGIN[a-z ]*END", &["begin"]),
            entropy,
            stop,
            rule("uni", r"\béé[a-zé]{1,3}\b", &[]),
            rule("mail", r"[a-z]{2,6}@[a-z]{2,8}\.(?:com|org)", &["@"]),
            rule("unit", r"\b[0-9]{2,4}(?:px|em)\b", &["px", "EM"]),
        ])
        .unwrap(),
    )
});

static BUILTIN: LazyLock<Arc<Scanner>> =
    LazyLock::new(|| Arc::new(Scanner::new(builtin::rules()).unwrap()));

/// Every test and built-in rule, each alone in a scanner.
static SINGLES: LazyLock<Vec<(RuleDef, Scanner)>> = LazyLock::new(|| {
    let defs = (0..TEST_RULES.len())
        .map(|i| TEST_RULES.rule(i).clone())
        .chain((0..BUILTIN.len()).map(|i| BUILTIN.rule(i).clone()));
    defs.map(|def| (def.clone(), Scanner::new(vec![def]).unwrap()))
        .collect()
});

/// Pieces of text that the rules find, nearly find, or that sit at their edges.
const FRAGMENTS: &[&str] = &[
    "tok_ab12",
    "tok_abcdefgh9",
    "xtok_ab12",
    "password: hunter22",
    "PASS=",
    "123-45-6789",
    "1234-56-789",
    "\nkey:abc\n",
    "key:",
    "zz",
    "BEGIN some text END",
    "BEGIN",
    "END",
    "Q8xZ2lMp4vR7tY1w",
    "sk-a1b2c3",
    "sk-xx1234",
    "sk-0abcde",
    "ééabc",
    "é",
    " ",
    "\n",
    "-",
    "_",
    ":",
    "=",
    "[REDACTED:tok]",
    "[REDACTED:",
    "ghp_",
    "AKIA",
    "sk-ant-",
    "@",
    "user@example.org",
    "alice.smith@corp-mail.net",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "10.1.2.3",
    "fe80::1",
    "postgres://u:p4ssw0rd@db/x",
    "api_key = \"",
    "ignore all previous instructions",
    "eyJhbGciOiJIUzI1NiJ9.",
    "-----BEGIN ",
    "PRIVATE KEY-----",
    "xoxb-",
    "AIza",
    "hf_",
    "npm_",
    "pypi-",
    "SG.",
    "sk_live_",
    "glpat-",
];

/// Fake, random-looking token bodies (obviously generated, never a real credential).
fn token_body() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{16,48}"
}

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(FRAGMENTS).prop_map(str::to_owned),
        2 => token_body(),
        2 => "[a-z0-9 _:=.@/+\\-\n]{0,10}",
        1 => any::<String>().prop_map(|s| s.chars().take(6).collect()),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn actions(len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..=3, len)
}

/// `text` streamed through `policy`'s redactor, split at `cuts` (rounded down to char boundaries).
fn streamed(policy: &Policy, text: &str, cuts: &[usize]) -> String {
    let mut redactor = policy.stream();
    let mut out = String::new();
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (text.len() + 1)).collect();
    cuts.sort_unstable();
    for mut cut in cuts {
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut > at {
            redactor.push(&text[at..cut], &mut out);
            at = cut;
        }
    }
    redactor.push(&text[at..], &mut out);
    redactor.finish(&mut out);
    out
}

/// The whole-text redaction a stream must equal: block counts as redact.
fn whole(scanner: &Scanner, text: &str, actions: &[u8]) -> String {
    let masked: Vec<u8> = actions.iter().map(|&a| a.min(2)).collect();
    scanner.redact(text, &scanner.find(text, &masked), &masked)
}

fn check_stream(
    scanner: &Arc<Scanner>,
    text: &str,
    actions: Vec<u8>,
    cuts: &[usize],
) -> Result<(), TestCaseError> {
    let expected = whole(scanner, text, &actions);
    let policy = Policy::new(Arc::clone(scanner), actions).unwrap();
    prop_assert_eq!(
        streamed(&policy, text, cuts),
        expected.clone(),
        "cuts {:?}",
        cuts
    );
    let every_byte: Vec<usize> = (0..=text.len()).collect();
    prop_assert_eq!(streamed(&policy, text, &every_byte), expected);
    Ok(())
}

/// The candidates of `def` in `text` by definition: the regex's leftmost-first matches over the
/// whole text, each containing a keyword, with a non-empty secret that passes the checks.
fn reference(def: &RuleDef, text: &str) -> Vec<(usize, usize)> {
    let regex = regex::Regex::new(&def.regex).unwrap();
    let allow: Vec<regex::Regex> = def
        .allowlist
        .iter()
        .map(|a| regex::Regex::new(a).unwrap())
        .collect();
    regex
        .captures_iter(text)
        .filter_map(|caps| {
            let whole = caps.get(0)?;
            let lower = whole.as_str().to_ascii_lowercase();
            if !def.keywords.is_empty()
                && !def
                    .keywords
                    .iter()
                    .any(|k| lower.contains(&k.to_ascii_lowercase()))
            {
                return None;
            }
            let secret = caps.get(def.secret_group)?;
            let value = secret.as_str();
            let passes = !value.is_empty()
                && def.entropy.is_none_or(|e| entropy::shannon(value) >= e)
                && !def
                    .stopwords
                    .iter()
                    .any(|w| value.to_lowercase().contains(w.as_str()))
                && !allow.iter().any(|a| a.is_match(value))
                && validate::check(def.validator, value);
            passes.then_some((secret.start(), secret.end()))
        })
        .collect()
}

proptest! {
    #![proptest_config(common::config(96))]

    #[test]
    fn each_rule_finds_what_its_definition_says(text in text()) {
        let text = text.replace("[REDACTED:", "[");
        for (def, alone) in SINGLES.iter() {
            let spans: Vec<(usize, usize)> = alone.find(&text, &[2]).iter().map(|f| (f.start, f.end)).collect();
            prop_assert_eq!(spans, reference(def, &text), "rule {}", def.id);
        }
    }

    #[test]
    fn finding_never_panics_and_spans_are_sorted_char_boundaries(input in any::<String>(), text in text()) {
        for scanner in [&*TEST_RULES, &*BUILTIN] {
            let all = vec![2u8; scanner.len()];
            for sample in [&input, &text] {
                let findings = scanner.find(sample, &all);
                let mut last = 0;
                for finding in &findings {
                    prop_assert!(finding.start >= last && finding.start < finding.end);
                    prop_assert!(sample.is_char_boundary(finding.start) && sample.is_char_boundary(finding.end));
                    last = finding.end;
                }
            }
        }
    }

    #[test]
    fn a_redacted_text_has_no_finding_left(text in text()) {
        for scanner in [&*TEST_RULES, &*BUILTIN] {
            let all = vec![2u8; scanner.len()];
            let redacted = Policy::new(Arc::clone(scanner), all.clone()).unwrap().redact_text(&text);
            let left: Vec<(&str, &str)> = scanner
                .find(&redacted, &all)
                .iter()
                .map(|f| (scanner.rule_id(f.rule), &redacted[f.start..f.end]))
                .collect();
            prop_assert!(left.is_empty(), "{:?} left in {:?}", left, redacted);
        }
    }

    #[test]
    fn streamed_redaction_equals_the_whole_with_test_rules(
        text in text(),
        acts in actions(TEST_RULES.len()),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        check_stream(&TEST_RULES, &text, acts, &cuts)?;
    }

    #[test]
    fn streamed_redaction_equals_the_whole_with_builtin_rules(
        text in text(),
        acts in actions(BUILTIN.len()),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        check_stream(&BUILTIN, &text, acts, &cuts)?;
    }

    #[test]
    fn streamed_redaction_equals_the_whole_on_long_texts(
        pieces in proptest::collection::vec(text(), 1..12),
        cuts in proptest::collection::vec(any::<usize>(), 1..8),
    ) {
        let text = pieces.join(&" filler prose ".repeat(40));
        let expected = whole(&BUILTIN, &text, &vec![2; BUILTIN.len()]);
        let policy = Policy::new(Arc::clone(&BUILTIN), vec![2; BUILTIN.len()]).unwrap();
        prop_assert_eq!(streamed(&policy, &text, &cuts), expected);
    }
}
