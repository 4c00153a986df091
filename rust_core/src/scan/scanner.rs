//! [`Scanner`]: every rule compiled once, the keyword prefilter over all of them, and the
//! whole-text scan ([`Scanner::find`]) and redaction ([`Scanner::redact`]).

use super::compile::{compile, CompiledRule};
use super::merge;
use super::prefilter::{add_window, fold_into, window, Hit, Prefilter};
use super::rule::{Category, RuleDef};
use super::search::{
    context_len, search_anchored, search_region, Candidate, Hay, Region, SearchArgs,
};
use super::{Finding, PLACEHOLDER_OPEN};
use crate::error::RuleError;

/// Action byte: the rule does not run.
pub const OFF: u8 = 0;
/// Action byte: a finding is only reported (metrics, audit).
pub const LOG: u8 = 1;
/// Action byte: a finding is replaced by `[REDACTED:<rule id>]`.
pub const REDACT: u8 = 2;
/// Action byte: a finding refuses the request (in a streamed answer it is redacted).
pub const BLOCK: u8 = 3;

/// The compiled rules. Immutable and `Sync`: one per worker, shared by every policy and thread.
#[derive(Debug)]
pub struct Scanner {
    rules: Vec<CompiledRule>,
    prefilter: Prefilter,
    ctx: usize,
}

/// Buffers one scan reuses, so that scanning the many strings of a JSON body allocates nothing
/// per string.
#[derive(Debug, Default)]
pub struct Scratch {
    regions: Vec<(usize, Region)>,
    last: Vec<usize>,
    candidates: Vec<Candidate>,
    folded: Vec<u8>,
    hits: Vec<Hit>,
    positions: Vec<usize>,
    recent: Vec<Vec<usize>>,
}

impl Scanner {
    /// Compiles `rules`; the first that does not compile (or repeats an id) is the error.
    pub fn new(rules: Vec<RuleDef>) -> Result<Scanner, RuleError> {
        let mut compiled: Vec<CompiledRule> = Vec::with_capacity(rules.len());
        for (index, def) in rules.into_iter().enumerate() {
            if compiled.iter().any(|r| r.def.id == def.id) {
                return Err(RuleError {
                    index,
                    id: def.id,
                    message: "duplicate rule id".to_owned(),
                });
            }
            compiled.push(compile(index, def)?);
        }
        let prefilter = Prefilter::new(&compiled).map_err(|e| RuleError {
            index: 0,
            id: compiled
                .first()
                .map(|r| r.def.id.clone())
                .unwrap_or_default(),
            message: format!("keyword automaton: {e}"),
        })?;
        let longest_id = compiled.iter().map(|r| r.def.id.len()).max().unwrap_or(0);
        Ok(Scanner {
            rules: compiled,
            prefilter,
            ctx: context_len(longest_id),
        })
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the scanner has no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rule `index` as it was given (its `max_len` as given too; see [`Scanner::max_len`]).
    pub fn rule(&self, index: usize) -> &RuleDef {
        &self.rules[index].def
    }

    /// The id of rule `index`.
    pub fn rule_id(&self, index: usize) -> &str {
        &self.rules[index].def.id
    }

    /// The category of rule `index`.
    pub fn category(&self, index: usize) -> Category {
        self.rules[index].def.category
    }

    /// The bound on the length of a match of rule `index` (given, or from its regex, at most 4096
    /// unless given larger).
    pub fn max_len(&self, index: usize) -> usize {
        self.rules[index].max_len
    }

    pub(crate) fn compiled(&self) -> &[CompiledRule] {
        &self.rules
    }

    pub(crate) fn prefilter(&self) -> &Prefilter {
        &self.prefilter
    }

    /// The context a search needs on each side of a span ([`context_len`]).
    pub(crate) fn ctx(&self) -> usize {
        self.ctx
    }

    /// The findings in `text` of the rules whose action (one byte per rule, 0 off, 1 log, 2 redact,
    /// 3 block; missing bytes are off) is not off: byte spans of the secrets, sorted and
    /// non-overlapping.
    ///
    /// ```
    /// use _core::scan::{Category, RuleDef, Scanner};
    /// let mut rule = RuleDef::new("demo-token", Category::Secret, r"\bdemo_[a-z0-9]{8}\b");
    /// rule.keywords = vec!["demo_".to_owned()];
    /// let scanner = Scanner::new(vec![rule]).unwrap();
    /// let text = "token demo_a1b2c3d4 here";
    /// let findings = scanner.find(text, &[2]);
    /// assert_eq!((findings[0].start, findings[0].end), (6, 19));
    /// assert_eq!(scanner.redact(text, &findings, &[2]), "token [REDACTED:demo-token] here");
    /// ```
    pub fn find(&self, text: &str, actions: &[u8]) -> Vec<Finding> {
        let mut findings = Vec::new();
        self.find_with(text, actions, &mut Scratch::default(), &mut findings);
        findings
    }

    /// [`Scanner::find`] with reused buffers, appending to `out`.
    pub fn find_with(
        &self,
        text: &str,
        actions: &[u8],
        scratch: &mut Scratch,
        out: &mut Vec<Finding>,
    ) {
        let action = |rule: usize| actions.get(rule).copied().unwrap_or(OFF);
        let Scratch {
            regions,
            last,
            candidates,
            folded,
            hits,
            positions,
            recent,
        } = scratch;
        regions.clear();
        last.clear();
        last.resize(self.rules.len(), usize::MAX);
        recent.resize_with(self.rules.len(), Vec::new);
        recent.iter_mut().for_each(Vec::clear);
        let mut keyworded = false;
        for (index, rule) in self.rules.iter().enumerate() {
            if action(index) == OFF {
                continue;
            }
            keyworded |= rule.keywords.is_some();
            if rule.keywords.is_none() && rule.required.is_none() {
                regions.push((
                    index,
                    Region {
                        start: 0,
                        end: usize::MAX,
                        pos: 0,
                    },
                ));
            }
        }
        let hay = Hay { text, base: 0 };
        let mut open = |rule: usize, start: usize, end: usize| {
            let opened = window(start, end, self.rules[rule].max_len);
            let previous = regions.get_mut(last[rule]).map(|(_, region)| region);
            if let Some(region) = add_window(previous, opened) {
                last[rule] = regions.len();
                regions.push((rule, region));
            }
        };
        let bytes = text.as_bytes();
        self.prefilter
            .byte_hits(bytes, 0, actions, positions, recent, &mut open);
        if keyworded {
            fold_into(text.as_bytes(), folded);
            hits.clear();
            self.prefilter.keyword_hits(folded, 0, 0, actions, hits);
            hits.sort_unstable();
            let mut at = 0;
            while at < hits.len() {
                let rule = hits[at].rule;
                let same = hits[at..].iter().take_while(|h| h.rule == rule).count();
                let group = &hits[at..at + same];
                if self.rules[rule].anchored {
                    let args = SearchArgs {
                        rule,
                        tier: action(rule),
                        ctx: self.ctx,
                        limit: None,
                    };
                    let starts = group.iter().map(|h| h.start);
                    search_anchored(&self.rules[rule], hay, starts, &mut 0, args, candidates);
                } else {
                    group.iter().for_each(|h| open(rule, h.start, h.end));
                }
                at += same;
            }
        }
        for (rule, region) in regions.iter_mut() {
            let args = SearchArgs {
                rule: *rule,
                tier: action(*rule),
                ctx: self.ctx,
                limit: None,
            };
            search_region(&self.rules[*rule], hay, region, args, candidates);
        }
        if !candidates.is_empty() {
            merge::resolve(candidates, out);
        }
    }

    /// Marks in `marks` (one per segment) the segments of `text` that can hold a finding:
    /// `ends[i]` is where segment `i` ends (segments are consecutive from 0). A segment with no
    /// keyword occurrence and no run of required bytes of an enabled rule has none, so only the
    /// marked segments need [`Scanner::find_with`]. One prefilter pass for many short strings.
    pub fn mark_segments(
        &self,
        text: &str,
        ends: &[usize],
        actions: &[u8],
        scratch: &mut Scratch,
        marks: &mut Vec<bool>,
    ) {
        marks.clear();
        let enabled = |rule: usize| actions.get(rule).is_some_and(|&a| a != OFF);
        let everywhere = (0..self.rules.len()).any(|r| {
            enabled(r) && self.rules[r].keywords.is_none() && self.rules[r].required.is_none()
        });
        marks.resize(ends.len(), everywhere);
        if everywhere {
            return;
        }
        let segment = |at: usize| ends.partition_point(|&end| end <= at);
        let Scratch {
            folded,
            hits,
            positions,
            recent,
            ..
        } = scratch;
        recent.resize_with(self.rules.len(), Vec::new);
        recent.iter_mut().for_each(Vec::clear);
        let bytes = text.as_bytes();
        self.prefilter
            .byte_hits(bytes, 0, actions, positions, recent, |_, first, end| {
                for index in segment(first)..segment(end - 1).saturating_add(1).min(marks.len()) {
                    marks[index] = true;
                }
            });
        if (0..self.rules.len()).any(|r| enabled(r) && self.rules[r].keywords.is_some()) {
            fold_into(bytes, folded);
            hits.clear();
            self.prefilter.keyword_hits(folded, 0, 0, actions, hits);
            for hit in hits.iter() {
                if let Some(mark) = marks.get_mut(segment(hit.start)) {
                    *mark = true;
                }
            }
        }
    }

    /// `text` with each finding whose action is redact or block replaced by `[REDACTED:<rule id>]`
    /// (`findings` as [`Scanner::find`] gives them, for the same `actions`).
    pub fn redact(&self, text: &str, findings: &[Finding], actions: &[u8]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for finding in findings {
            if actions.get(finding.rule).copied().unwrap_or(OFF) >= REDACT && finding.start >= at {
                out.push_str(&text[at..finding.start]);
                push_placeholder(&mut out, self.rule_id(finding.rule));
                at = finding.end;
            }
        }
        out.push_str(&text[at..]);
        out
    }
}

impl Scanner {
    /// `redacted` (a text [`Scanner::redact`] gave) redacted again until no redact or block finding
    /// is left, at most [`MAX_ROUNDS`] more times: a redaction can give a rule a new match at the
    /// placeholder's edge (a `\b` that the secret's last character had hidden). Each round takes
    /// at least one byte of text into a placeholder, so the rounds end; blocks count as redacts.
    pub fn redact_again(
        &self,
        mut redacted: String,
        actions: &[u8],
        scratch: &mut Scratch,
    ) -> String {
        let masks: Vec<u8> = actions.iter().map(|&a| a.min(REDACT)).collect();
        let mut found = Vec::new();
        for _ in 0..MAX_ROUNDS {
            found.clear();
            self.find_with(&redacted, &masks, scratch, &mut found);
            if !found.iter().any(|f| masks[f.rule] == REDACT) {
                break;
            }
            redacted = self.redact(&redacted, &found, &masks);
        }
        redacted
    }
}

/// Bound on the extra rounds of [`Scanner::redact_again`].
pub const MAX_ROUNDS: usize = 8;

/// Appends `[REDACTED:<id>]` to `out`.
pub fn push_placeholder(out: &mut String, id: &str) {
    out.push_str(PLACEHOLDER_OPEN);
    out.push_str(id);
    out.push(']');
}
