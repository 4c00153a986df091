//! Loading rules: parse each source with Cedar, name every policy (`@id`, else `policy<N>`), read
//! its `@priority`, and validate the whole set against the routing schema; every problem is
//! located as `<source>:<line>:<col>` from the span Cedar reports.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{Effect, Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

use crate::error::{RoutePolicyError, RuleProblem};

/// The id of the permit-everything policy the Cedar path adds (eligible unless a forbid matches).
pub(crate) const BASE_ID: &str = "ferrogate.route.default";

/// Problems reported per source at most (a file of garbage gives one per token otherwise).
const MAX_PROBLEMS: usize = 20;

/// One rule: a Cedar policy with its id, effect and priority, and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// `@id`, else `policy<N>` (N counts every policy of every source, from 0).
    pub id: String,
    /// True for a `forbid`.
    pub forbid: bool,
    /// `@priority("N")` of a permit (0 without one).
    pub priority: i64,
    /// The policy, its id set to [`Rule::id`].
    pub policy: Policy,
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
///
/// ```
/// assert_eq!(_core::policy::load::line_col("ab\ncd", 4), (2, 2));
/// ```
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

fn problem(origin: &str, text: &str, offset: usize, message: String) -> RuleProblem {
    let (line, col) = line_col(text, offset);
    RuleProblem {
        origin: origin.to_owned(),
        line,
        col,
        message,
    }
}

/// A diagnostic's message, with its first label's text and its help when they add something.
fn describe(diagnostic: &dyn Diagnostic, message: String) -> (usize, String) {
    let mut text = message;
    let mut offset = 0;
    if let Some(label) = diagnostic.labels().and_then(|mut labels| labels.next()) {
        offset = label.offset();
        if let Some(what) = label.label().filter(|l| !text.contains(l)) {
            text = format!("{text}: {what}");
        }
    }
    if let Some(help) = diagnostic.help() {
        text = format!("{text} ({help})");
    }
    (offset, text)
}

/// The byte offset where `policy` starts in its source.
fn start_of(policy: &Policy) -> usize {
    policy.as_ref().loc().map_or(0, |loc| loc.span.offset())
}

/// The byte offset of `policy`'s annotation `key`, or of the policy.
fn annotation_at(policy: &Policy, key: &str) -> usize {
    policy
        .as_ref()
        .annotations()
        .find(|(k, _)| k.as_ref() == key)
        .and_then(|(_, a)| a.loc.as_ref())
        .map_or_else(|| start_of(policy), |loc| loc.span.offset())
}

/// Reads `@priority` of a policy: `Ok(0)` without one, `Err(message)` when not usable.
fn priority(policy: &Policy, forbid: bool) -> Result<i64, String> {
    let Some(value) = policy.annotation("priority") else {
        return Ok(0);
    };
    match value.trim().parse::<i64>() {
        Ok(_) if forbid => {
            Err("@priority has no effect on a forbid (forbid makes a deployment ineligible)".into())
        }
        Ok(priority) => Ok(priority),
        Err(_) => Err(format!("@priority must be an integer, got {value:?}")),
    }
}

/// The rules of `sources` (`(text, origin)` pairs, in order), validated together against `schema`
/// in strict mode.
pub(crate) fn load(
    sources: &[(&str, &str)],
    schema: &Schema,
) -> Result<Vec<Rule>, RoutePolicyError> {
    let mut problems: Vec<(usize, RuleProblem)> = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for (index, &(text, origin)) in sources.iter().enumerate() {
        let mut report = |offset: usize, message: String| {
            problems.push((index, problem(origin, text, offset, message)));
        };
        let set = match PolicySet::from_str(text) {
            Ok(set) => set,
            Err(errors) => {
                for error in errors.iter().take(MAX_PROBLEMS) {
                    let (offset, message) = describe(error, error.to_string());
                    report(offset, message);
                }
                continue;
            }
        };
        for template in set.templates() {
            let offset = template.as_ref().loc().map_or(0, |loc| loc.span.offset());
            report(
                offset,
                "templates (?principal, ?resource) are not supported: name the entity".into(),
            );
        }
        let mut policies: Vec<&Policy> = set.policies().collect();
        policies.sort_by_key(|p| start_of(p));
        for policy in policies {
            let n = rules.len();
            let id = policy
                .annotation("id")
                .map_or_else(|| format!("policy{n}"), str::to_owned);
            let forbid = policy.effect() == Effect::Forbid;
            let priority = priority(policy, forbid).unwrap_or_else(|message| {
                report(annotation_at(policy, "priority"), message);
                0
            });
            let offset = annotation_at(policy, "id");
            if id.trim().is_empty() || id == BASE_ID {
                report(offset, format!("@id {id:?} cannot be used"));
            } else if let Some(&(first, first_at)) = seen.get(&id) {
                let (line, _) = line_col(sources[first].0, first_at);
                let first = sources[first].1;
                report(
                    offset,
                    format!("rule id {id:?} is given twice (first at {first}:{line})"),
                );
            } else {
                seen.insert(id.clone(), (index, offset));
            }
            at.insert(id.clone(), index);
            let policy = policy.new_id(PolicyId::new(&id));
            rules.push(Rule {
                id,
                forbid,
                priority,
                policy,
            });
        }
    }
    if problems.is_empty() {
        let set = PolicySet::from_policies(rules.iter().map(|r| r.policy.clone()));
        match set {
            Ok(set) => {
                let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
                for error in result.validation_errors() {
                    let index = at.get(&error.policy_id().to_string()).copied().unwrap_or(0);
                    let (text, origin) = sources.get(index).copied().unwrap_or(("", ""));
                    let (offset, message) = describe(error, error.to_string());
                    problems.push((index, problem(origin, text, offset, message)));
                }
                if problems.is_empty() {
                    return Ok(rules);
                }
            }
            Err(error) => {
                let (text, origin) = sources.first().copied().unwrap_or(("", ""));
                problems.push((0, problem(origin, text, 0, error.to_string())));
            }
        }
    }
    problems.sort_by_key(|(index, p)| (*index, p.line, p.col));
    Err(RoutePolicyError::Rules {
        problems: problems.into_iter().map(|(_, p)| p).collect(),
    })
}
