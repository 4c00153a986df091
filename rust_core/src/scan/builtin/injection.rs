//! Built-in prompt-injection phrases (case-insensitive): instructions to drop the previous
//! instructions or the system prompt, to reveal it, to switch to a "jailbreak" persona, or to
//! bypass safety rules. Words may be separated by up to five spaces or line breaks.
use super::super::rule::{Category, RuleDef};
use super::rule;

/// Up to five ASCII spaces, tabs or line breaks between the words of a phrase.
const SP: &str = r"[ \t\r\n]{1,5}";

/// The injection rules.
pub(super) fn rules() -> Vec<RuleDef> {
    vec![
        phrase(
            "injection-ignore-instructions",
            "an instruction to ignore the previous instructions",
            r"\b(?:ignore|disregard|forget|skip|override)_(?:(?:all|any|every|the|your|my|of|these|those)_){0,3}(?:previous|prior|above|preceding|earlier|former|original|initial)_(?:instructions?|prompts?|directions?|directives?|rules|guidelines|messages?|context)\b",
            &["ignore", "disregard", "forget", "skip", "override"],
        ),
        phrase(
            "injection-system-prompt",
            "an instruction to drop or reveal the system prompt",
            r"\b(?:ignore|disregard|forget|override|bypass|reveal|print|show|repeat|leak|output|dump)_(?:(?:me|us|the|your|this|its|all|of)_){0,3}(?:system_(?:prompt|message|instructions?)|hidden_(?:prompt|instructions?)|initial_(?:prompt|instructions))\b",
            // every match ends in one of these ("system" alone is the role of most chat requests)
            &["prompt", "instruction", "message"],
        ),
        phrase(
            "injection-jailbreak",
            "a switch to a jailbreak persona (DAN, developer mode, unrestricted)",
            r"\b(?:you_are_now_(?:in_)?(?:dan|developer_mode|jailbreak_mode|jailbroken|unrestricted|unfiltered|god_mode)|(?:enable|activate|enter|switch_to)_(?:dan|jailbreak|god)_mode|pretend_(?:to_be|you_are)_dan)\b",
            // every match ends in one of these ("now" is in every "know")
            &[
                "dan",
                "developer",
                "jailbr",
                "unrestricted",
                "unfiltered",
                "god",
            ],
        ),
        phrase(
            "injection-bypass-safety",
            "an instruction to bypass safety or content rules",
            r"\b(?:ignore|bypass|disable|override|disregard|circumvent)_(?:(?:all|any|your|the|of|these|those)_){0,3}(?:safety|content|ethical|moderation)_(?:filters?|guidelines|restrictions|rules|polic(?:y|ies)|guardrails|protocols)\b",
            &["safety", "content", "ethical", "moderation"],
        ),
    ]
}

/// A case-insensitive phrase rule; `_` in `words` stands for [`SP`].
fn phrase(id: &str, description: &str, words: &str, keywords: &[&str]) -> RuleDef {
    rule(
        id,
        Category::Injection,
        description,
        &format!("(?i){}", words.replace('_', SP)),
        keywords,
    )
}
