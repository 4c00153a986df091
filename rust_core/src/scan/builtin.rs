//! The built-in rules: credentials ([`secrets`], [`generic`]), personal data ([`pii`]) and
//! prompt-injection phrases ([`injection`]), all written in this project.
//!
//! [`rules`] returns them in a fixed order: specific secret formats first, then the connection
//! URLs and generic `password=` / `secret:` / `api_key:` assignments, then PII, then injection.
//! The order is the tie-break when two rules find the same span, so a GitHub token assigned to
//! `api_key` is reported as `github-pat`, not as `generic-api-key`.
//!
//! How every rule is written, so the scanner stays fast and the stream hold-back small:
//! - Each secret rule has keywords, lowercase literals one of which every match contains (the
//!   aho-corasick prefilter). Of the PII rules only `email` has one (`@`): a keyword as common
//!   as `.`, `:` or `-` would cost the prefilter more than it saves, so the number rules run
//!   over the whole text.
//! - Every repetition is bounded, so each rule's longest match (its `max_len`, what a stream
//!   holds back) is finite and small, except in the three rules for long credentials of variable
//!   length: the PEM private key, the Google service-account key and the JWT. Their bodies are
//!   unbounded, which keeps their regexes small (a bound of thousands would compile to thousands
//!   of NFA states), and their `max_len` is the scanner's cap of 4096 bytes, which the PEM block
//!   of a 4096-bit RSA key (about 3.3 KB) fits.
//! - Word boundaries are ASCII (`\b` is written as `(?-u:\b)` by [`rule`]), and classes are
//!   ASCII (`[0-9]`, `[ \t]`, never `\d`, `\s`), so the lazy DFA runs on any text.
//! - A token whose alphabet has `-` (which `\b` does not treat as a word character) ends with an
//!   explicit "not a token character" group, and its secret is capture group 1.
//! - Entropy thresholds reject low-entropy placeholders (`ghp_xxxx...`, `password=password`);
//!   stopwords and allowlists reject documented placeholders (`AKIAIOSFODNN7EXAMPLE`,
//!   `changeme`, `${VAR}`, `<password>`, `example.com`, well-known test card numbers).
mod generic;
mod injection;
mod pii;
mod secrets;

use super::rule::{Category, RuleDef};

/// The built-in rules, in tie-break order (see the module docs); ids are unique and kebab-case.
///
/// ```
/// let rules = _core::scan::builtin::rules();
/// assert!(rules.iter().any(|rule| rule.id == "github-pat"));
/// ```
pub fn rules() -> Vec<RuleDef> {
    let mut rules = secrets::rules();
    rules.extend(generic::rules());
    rules.extend(pii::rules());
    rules.extend(injection::rules());
    rules
}

/// The end of a token whose characters are `[0-9A-Za-z_-]`: any other character, or the end of
/// the text (used after a token's capture group 1).
const TOKEN_END: &str = r"(?:[^0-9A-Za-z_\-]|$)";

/// Placeholder words no real token contains (case-insensitive stopwords).
const PLACEHOLDERS: [&str; 2] = ["xxxx", "example"];

/// A rule with its description and keywords; every `\b` in `regex` becomes the ASCII word
/// boundary `(?-u:\b)` (so write no `\b` inside a class, and no escaped backslash before a `b`).
fn rule(
    id: &str,
    category: Category,
    description: &str,
    regex: &str,
    keywords: &[&str],
) -> RuleDef {
    let mut def = RuleDef::new(id, category, regex.replace(r"\b", r"(?-u:\b)"));
    def.description = description.to_owned();
    def.keywords = keywords.iter().map(|k| (*k).to_owned()).collect();
    def
}

/// A secret rule (see [`rule`]).
fn secret(id: &str, description: &str, regex: &str, keywords: &[&str]) -> RuleDef {
    rule(id, Category::Secret, description, regex, keywords)
}

/// A secret rule for a token of `[0-9A-Za-z_-]` characters: `body` starts at a word boundary and
/// is followed by [`TOKEN_END`]; the token is capture group 1, and [`PLACEHOLDERS`] are stopwords.
fn token(id: &str, description: &str, body: &str, keywords: &[&str]) -> RuleDef {
    let mut def = secret(
        id,
        description,
        &format!(r"\b({body}){TOKEN_END}"),
        keywords,
    );
    def.secret_group = 1;
    def.stopwords = words(&PLACEHOLDERS);
    def
}

/// Owned copies of `items`.
fn words(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::rules;

    #[test]
    fn ids_are_unique_kebab_case_and_keywords_lowercase() {
        let rules = rules();
        let mut ids: Vec<&str> = rules.iter().map(|rule| rule.id.as_str()).collect();
        for id in &ids {
            assert!(
                id.split('-').all(|part| !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())),
                "{id} is not kebab-case"
            );
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), rules.len());
        for rule in &rules {
            for keyword in &rule.keywords {
                assert_eq!(keyword, &keyword.to_ascii_lowercase(), "{}", rule.id);
                assert!(!keyword.is_empty(), "{}", rule.id);
            }
        }
    }
}
