//! Compiling one [`RuleDef`] into a [`CompiledRule`]: its regex (the `regex` crate's meta engine, so a
//! search can be bounded to a span while look-around still sees the text around it), its allowlist,
//! stopwords and keyword check, and its match-length bound.
//!
//! Every regex is compiled with size limits, and the `regex` engines never backtrack without bound:
//! a search costs time linear in the text whatever the pattern.

use aho_corasick::AhoCorasick;
use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;

use super::anchor::{keyword_prefixed, required_bytes, Required};
use super::rule::RuleDef;
use crate::error::RuleError;

/// Bound on a match's length when the regex gives none (or a larger one): what a stream holds back.
pub const MAX_HOLD: usize = 4096;

/// Bound on the compiled size of one regex (its NFA), so a pathological rule fails at load.
const NFA_SIZE_LIMIT: usize = 8 << 20;

/// Bound on the lazy DFA's cache of one regex.
const DFA_CACHE: usize = 2 << 20;

/// One rule, ready to run.
#[derive(Debug)]
pub struct CompiledRule {
    /// The rule as given.
    pub def: RuleDef,
    /// The rule's regex.
    pub regex: Regex,
    /// The keywords, ASCII case-insensitive (`None`: the rule has none and always runs).
    pub keywords: Option<AhoCorasick>,
    /// The allowlist regexes (a secret matching any is not a finding).
    pub allowlist: Vec<regex::Regex>,
    /// The stopwords, lowercased.
    pub stopwords: Vec<String>,
    /// Bound on a match's length in bytes (at least 1).
    pub max_len: usize,
    /// The keywords, ASCII-lowercased.
    pub folded_keywords: Vec<Vec<u8>>,
    /// Every match starts with a keyword: the regex runs anchored at each occurrence.
    pub anchored: bool,
    /// The length of the longest keyword (0 without keywords).
    pub longest_keyword: usize,
    /// For a rule without keywords: bytes of which every match holds a least number (`None`: the
    /// regex runs over the whole text).
    pub required: Option<Required>,
}

/// Compiles rule `index` of a scanner's list.
pub fn compile(index: usize, def: RuleDef) -> Result<CompiledRule, RuleError> {
    let fail = |message: String| RuleError {
        index,
        id: def.id.clone(),
        message,
    };
    if def.id.is_empty() || def.id.chars().any(|c| c.is_whitespace() || c == ']') {
        return Err(fail(
            "the id must be non-empty, without spaces or ']'".to_owned(),
        ));
    }
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(&def.regex)
        .map_err(|e| fail(format!("invalid regex: {e}")))?;
    let regex = Regex::builder()
        .configure(
            meta::Config::new()
                .nfa_size_limit(Some(NFA_SIZE_LIMIT))
                .hybrid_cache_capacity(DFA_CACHE),
        )
        .syntax(syntax::Config::new())
        .build(&def.regex)
        .map_err(|e| fail(format!("invalid regex: {e}")))?;
    let groups = regex
        .group_info()
        .group_len(regex_automata::PatternID::ZERO);
    if def.secret_group >= groups {
        return Err(fail(format!(
            "secret_group {} but the regex has {} capture group(s)",
            def.secret_group,
            groups.saturating_sub(1)
        )));
    }
    if let Some(entropy) = def.entropy {
        if !entropy.is_finite() || entropy < 0.0 {
            return Err(fail(format!(
                "entropy must be a finite number >= 0, not {entropy}"
            )));
        }
    }
    let max_len = match def.max_len {
        Some(0) => return Err(fail("max_len must be at least 1".to_owned())),
        Some(len) => len,
        None => hir
            .properties()
            .maximum_len()
            .map_or(MAX_HOLD, |len| len.clamp(1, MAX_HOLD)),
    };
    if def.keywords.iter().any(String::is_empty) {
        return Err(fail("a keyword must not be empty".to_owned()));
    }
    let keywords = if def.keywords.is_empty() {
        None
    } else {
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&def.keywords)
            .map_err(|e| fail(format!("keywords: {e}")))?;
        Some(automaton)
    };
    let allowlist = def
        .allowlist
        .iter()
        .map(|pattern| {
            regex::RegexBuilder::new(pattern)
                .size_limit(NFA_SIZE_LIMIT)
                .dfa_size_limit(DFA_CACHE)
                .build()
                .map_err(|e| fail(format!("invalid allowlist regex {pattern:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let stopwords = def.stopwords.iter().map(|w| w.to_lowercase()).collect();
    let folded_keywords: Vec<Vec<u8>> = def
        .keywords
        .iter()
        .map(|k| k.as_bytes().to_ascii_lowercase())
        .collect();
    let anchored = !folded_keywords.is_empty() && keyword_prefixed(&hir, &folded_keywords);
    let longest_keyword = folded_keywords.iter().map(Vec::len).max().unwrap_or(0);
    let required = if folded_keywords.is_empty() {
        required_bytes(&hir, max_len)
    } else {
        None
    };
    Ok(CompiledRule {
        def,
        regex,
        keywords,
        allowlist,
        stopwords,
        max_len,
        folded_keywords,
        anchored,
        longest_keyword,
        required,
    })
}

#[cfg(test)]
mod tests {
    use super::{compile, MAX_HOLD};
    use crate::scan::rule::{Category, RuleDef};

    #[test]
    fn max_len_comes_from_the_regex_and_is_capped() {
        let bounded = compile(0, RuleDef::new("a", Category::Custom, r"\bab[0-9]{4}\b"));
        assert_eq!(bounded.map(|r| r.max_len).ok(), Some(6));
        let unbounded = compile(0, RuleDef::new("a", Category::Custom, r"a\S+"));
        assert_eq!(unbounded.map(|r| r.max_len).ok(), Some(MAX_HOLD));
    }

    #[test]
    fn errors_name_the_rule_and_index() {
        let error = compile(3, RuleDef::new("bad-one", Category::Custom, "a(")).err();
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.starts_with("rule \"bad-one\" (index 3): invalid regex"),
            "{message}"
        );
        let mut group = RuleDef::new("g", Category::Custom, "a(b)");
        group.secret_group = 2;
        assert!(compile(0, group).is_err());
    }
}
