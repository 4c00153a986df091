//! [`StreamRedactor`]: exact redaction of one text channel of a streamed answer (answer text,
//! reasoning, a tool call's arguments) whose text arrives in pieces.
//!
//! It holds back only what a match of the longest enabled rule could still need (its `max_len`;
//! for a rule whose matches start with a keyword, only its longest keyword until one is seen)
//! plus the context look-around and placeholders need, and emits the rest. Pieces are searched
//! in batches of an eighth of that hold-back, so up to that much more may wait. Its output over any
//! split of a text is exactly what [`Scanner::redact`] gives for the whole text with the same
//! policy, where block counts as redact (an answer is masked, never refused whole); log rules
//! are only counted. Exactness holds for matches up to their rule's `max_len` (always, for a rule
//! whose regex has a bound of at most 4096 bytes).
//!
//! How: each rule keeps its search regions ([`super::search`]) and resumes in them as text
//! arrives; a match is final once the text up to `max_len` + context past its start is there.
//! Every rule's candidates before the earliest position still open are final, so the overlap
//! resolution up to there is too, and that text is emitted.

use std::collections::VecDeque;

use super::merge::{order, overlaps, Group};
use super::policy::Policy;
use super::prefilter::{add_window, fold_into, window, Hit};
use super::scanner::{push_placeholder, BLOCK, LOG, OFF, REDACT};
use super::search::{search_anchored, search_region, Candidate, Hay, Region, SearchArgs};
use super::Scanner;

/// Text is searched again once an eighth of the hold-back has arrived since the last search
/// (small pieces, a token each, are then searched a few hundred bytes at a time).
const BATCH_DIVISOR: usize = 8;

/// Where a rule's search stands.
#[derive(Debug, Clone)]
enum RuleState {
    /// Regions still to search (around keyword occurrences or required bytes, or the whole text).
    Regions(VecDeque<Region>),
    /// Keyword occurrence starts still to search anchored at, and where the last match ended.
    Anchored { starts: VecDeque<usize>, pos: usize },
}

/// Redacts one text channel of a stream. Feed it with [`StreamRedactor::push`], end the channel
/// with [`StreamRedactor::finish`] (after which it is ready for the next channel); findings are
/// counted per rule across channels ([`StreamRedactor::counts`]).
#[derive(Debug)]
pub struct StreamRedactor {
    policy: Policy,
    /// Tier per rule: 0 off, 1 log, 2 mask (redact and block).
    tiers: Vec<u8>,
    /// Enabled rules.
    enabled: Vec<usize>,
    /// Longest `max_len` of the enabled rules.
    hold: usize,
    /// Text from absolute offset `base` on (what is not emitted, and context before it).
    buf: String,
    base: usize,
    /// Absolute offset up to which text was emitted.
    emitted: usize,
    /// Search state per rule (indexed by rule).
    rules: Vec<RuleState>,
    /// Whether an enabled rule has keywords.
    keyworded: bool,
    folded: Vec<u8>,
    hits: Vec<Hit>,
    positions: Vec<usize>,
    /// Per rule, its last required bytes (see [`super::prefilter::Prefilter::byte_hits`]).
    history: Vec<Vec<usize>>,
    masks: Vec<Candidate>,
    logs: Vec<Candidate>,
    /// The masking finding being built (more candidates may still join it).
    group: Option<Group>,
    /// End of the last log finding counted.
    log_end: usize,
    /// Masks taken that a log candidate still pending could overlap.
    recent: VecDeque<(usize, usize)>,
    found: Vec<Candidate>,
    counts: Vec<u64>,
    /// Where the text stood when it was last searched.
    searched: usize,
}

impl StreamRedactor {
    /// A redactor with `policy`'s rules: redact and block rules mask, log rules count.
    pub fn new(policy: &Policy) -> StreamRedactor {
        let scanner = policy.scanner();
        let tiers: Vec<u8> = policy
            .actions()
            .iter()
            .map(|&a| if a == BLOCK { REDACT } else { a })
            .collect();
        let enabled: Vec<usize> = (0..scanner.len()).filter(|&r| tiers[r] != OFF).collect();
        let hold = enabled
            .iter()
            .map(|&r| scanner.max_len(r))
            .max()
            .unwrap_or(0);
        let keyworded = enabled
            .iter()
            .any(|&r| scanner.compiled()[r].keywords.is_some());
        let rules = scanner
            .compiled()
            .iter()
            .map(|rule| {
                if rule.anchored {
                    RuleState::Anchored {
                        starts: VecDeque::new(),
                        pos: 0,
                    }
                } else {
                    RuleState::Regions(VecDeque::new())
                }
            })
            .collect();
        let mut redactor = StreamRedactor {
            policy: policy.clone(),
            tiers,
            enabled,
            hold,
            buf: String::new(),
            base: 0,
            emitted: 0,
            rules,
            keyworded,
            folded: Vec::new(),
            hits: Vec::new(),
            positions: Vec::new(),
            history: vec![Vec::new(); scanner.len()],
            masks: Vec::new(),
            logs: Vec::new(),
            group: None,
            log_end: 0,
            recent: VecDeque::new(),
            found: Vec::new(),
            counts: vec![0; scanner.len()],
            searched: 0,
        };
        redactor.reset();
        redactor
    }

    /// Findings so far per rule index (masked ones and logged ones), over every channel.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Bytes of the channel received but not yet emitted.
    pub fn held(&self) -> usize {
        self.end() - self.emitted
    }

    /// Appends `text` to the channel and to `out` what of the channel is now safe to emit.
    pub fn push(&mut self, text: &str, out: &mut String) {
        if self.enabled.is_empty() {
            out.push_str(text);
            return;
        }
        let previous = self.end();
        self.buf.push_str(text);
        let scanner = self.policy.scanner();
        let bytes = self.buf.as_bytes();
        let rules = &mut self.rules;
        let mut open = |rule: usize, start: usize, end: usize| match &mut rules[rule] {
            RuleState::Regions(regions) => {
                let opened = window(start, end, scanner.max_len(rule));
                if let Some(region) = add_window(regions.back_mut(), opened) {
                    regions.push_back(region);
                }
            }
            RuleState::Anchored { starts, .. } => {
                let at = starts.partition_point(|&s| s < start);
                if starts.get(at) != Some(&start) {
                    starts.insert(at, start);
                }
            }
        };
        scanner.prefilter().byte_hits(
            &bytes[previous - self.base..],
            previous,
            &self.tiers,
            &mut self.positions,
            &mut self.history,
            &mut open,
        );
        if self.keyworded {
            let from = previous
                .saturating_sub(scanner.prefilter().longest().saturating_sub(1))
                .max(self.base);
            fold_into(&bytes[from - self.base..], &mut self.folded);
            self.hits.clear();
            scanner.prefilter().keyword_hits(
                &self.folded,
                from,
                previous,
                &self.tiers,
                &mut self.hits,
            );
            self.hits.sort_unstable();
            for hit in &self.hits {
                open(hit.rule, hit.start, hit.end);
            }
        }
        if self.end() - self.searched >= self.hold / BATCH_DIVISOR {
            self.process(false, out);
        }
    }

    /// Ends the channel: appends the rest of it, redacted, to `out`, and makes the redactor ready
    /// for a new channel (the counts are kept).
    pub fn finish(&mut self, out: &mut String) {
        if !self.enabled.is_empty() {
            self.process(true, out);
            let at = self.emitted - self.base;
            out.push_str(&self.buf[at..]);
        }
        self.reset();
    }

    fn end(&self) -> usize {
        self.base + self.buf.len()
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.base = 0;
        self.emitted = 0;
        self.searched = 0;
        self.group = None;
        self.log_end = 0;
        self.masks.clear();
        self.logs.clear();
        self.recent.clear();
        self.history.iter_mut().for_each(Vec::clear);
        let scanner = self.policy.scanner();
        for &rule in &self.enabled {
            let compiled = &scanner.compiled()[rule];
            match &mut self.rules[rule] {
                RuleState::Regions(regions) => {
                    regions.clear();
                    if compiled.keywords.is_none() && compiled.required.is_none() {
                        regions.push_back(Region {
                            start: 0,
                            end: usize::MAX,
                            pos: 0,
                        });
                    }
                }
                RuleState::Anchored { starts, pos } => {
                    starts.clear();
                    *pos = 0;
                }
            }
        }
    }

    /// Searches what is final, takes the findings before the earliest open position, emits up
    /// to there and drops the text no search needs any more.
    fn process(&mut self, eof: bool, out: &mut String) {
        let scanner: &Scanner = self.policy.scanner();
        let n = self.end();
        self.searched = n;
        let ctx = scanner.ctx();
        let longest = scanner.prefilter().longest();
        let hay = Hay {
            text: &self.buf,
            base: self.base,
        };
        let mut open = usize::MAX;
        for &rule in &self.enabled {
            let max_len = scanner.max_len(rule);
            let compiled = &scanner.compiled()[rule];
            let tier = self.tiers[rule];
            match &mut self.rules[rule] {
                RuleState::Regions(regions) => {
                    while let Some(region) = regions.front_mut() {
                        let end_final = eof || region.end.saturating_add(max_len) <= n;
                        let limit = if eof || (end_final && region.end.saturating_add(ctx) <= n) {
                            None
                        } else {
                            let mut limit = n.checked_sub(ctx + max_len);
                            if !end_final {
                                limit = limit.min(region.end.checked_sub(max_len));
                            }
                            match limit {
                                Some(limit) => Some(limit),
                                None => break,
                            }
                        };
                        let args = SearchArgs {
                            rule,
                            tier,
                            ctx,
                            limit,
                        };
                        if !search_region(compiled, hay, region, args, &mut self.found) {
                            break;
                        }
                        regions.pop_front();
                    }
                    for region in regions.iter() {
                        open = open.min(region.pos.max(region.start));
                    }
                }
                RuleState::Anchored { starts, pos } => {
                    let limit = if eof {
                        None
                    } else {
                        n.checked_sub(ctx + max_len)
                    };
                    if eof || limit.is_some() {
                        let args = SearchArgs {
                            rule,
                            tier,
                            ctx,
                            limit,
                        };
                        let consumed = search_anchored(
                            compiled,
                            hay,
                            starts.iter().copied(),
                            pos,
                            args,
                            &mut self.found,
                        );
                        starts.drain(..consumed);
                    }
                    if let Some(&front) = starts.front() {
                        open = open.min(front);
                    }
                }
            }
            // a match not found yet starts at a keyword occurrence not seen whole yet (a rule that
            // runs anchored), or in the window of one (or of a run of required bytes)
            if !eof && compiled.anchored {
                open = open.min((n + 1).saturating_sub(compiled.longest_keyword));
            } else if !eof && (compiled.keywords.is_some() || compiled.required.is_some()) {
                open = open.min((n + 1).saturating_sub(max_len));
            }
        }
        if eof {
            open = usize::MAX;
        }
        for candidate in self.found.drain(..) {
            if candidate.tier == LOG {
                self.logs.push(candidate);
            } else {
                self.masks.push(candidate);
            }
        }
        let held_from = self.take_masks(open, out).unwrap_or(usize::MAX);
        self.count_logs(if eof {
            usize::MAX
        } else {
            open.saturating_sub(self.hold)
        });
        let safe = floor_boundary(&self.buf, self.base, open.min(n).min(held_from));
        if safe > self.emitted {
            out.push_str(&self.buf[self.emitted - self.base..safe - self.base]);
            self.emitted = safe;
        }
        let keep = self
            .emitted
            .min(open)
            .min(held_from)
            .min(n.saturating_sub(longest))
            .saturating_sub(ctx);
        let keep = floor_boundary(&self.buf, self.base, keep.max(self.base));
        if keep > self.base {
            self.buf.drain(..keep - self.base);
            self.base = keep;
        }
    }

    /// Takes the mask candidates starting before `open` (all of them final), in order, into
    /// masking findings; emits each finding no later candidate can join. Returns the start of the
    /// finding still open, if any (text from there on is held).
    fn take_masks(&mut self, open: usize, out: &mut String) -> Option<usize> {
        self.masks.sort_unstable_by(order);
        let ready = self.masks.partition_point(|c| c.start < open);
        let scanner = self.policy.scanner();
        let mut done: Vec<Group> = Vec::new();
        for candidate in self.masks.drain(..ready) {
            if self.group.as_mut().is_some_and(|g| g.absorb(&candidate)) {
                continue;
            }
            done.extend(self.group.replace(Group::new(candidate)));
        }
        if self.group.is_some_and(|g| g.end <= open) {
            done.extend(self.group.take());
        }
        for group in done {
            out.push_str(&self.buf[self.emitted - self.base..group.start - self.base]);
            push_placeholder(out, scanner.rule_id(group.best.rule));
            self.emitted = group.end;
            self.counts[group.best.rule] += 1;
            self.recent.push_back((group.start, group.end));
        }
        self.group.map(|g| g.start)
    }

    /// Counts the log candidates starting before `ready_before` that no mask overlaps.
    fn count_logs(&mut self, ready_before: usize) {
        if !self.logs.is_empty() {
            self.logs.sort_unstable_by(order);
            let ready = self.logs.partition_point(|c| c.start < ready_before);
            let group = self.group.map(|g| [(g.start, g.end)]);
            let recent = self.recent.make_contiguous();
            for candidate in self.logs.drain(..ready) {
                let masked = overlaps(recent, candidate.start, candidate.end)
                    || group.is_some_and(|g| overlaps(&g, candidate.start, candidate.end));
                if candidate.start >= self.log_end && !masked {
                    self.log_end = candidate.end;
                    self.counts[candidate.rule] += 1;
                }
            }
        }
        let oldest = self
            .logs
            .first()
            .map_or(ready_before, |c| c.start.min(ready_before));
        while self.recent.front().is_some_and(|&(_, end)| end <= oldest) {
            self.recent.pop_front();
        }
    }
}

/// The largest char boundary of `buf` (held from absolute `base`) at or before absolute `at`.
fn floor_boundary(buf: &str, base: usize, at: usize) -> usize {
    let mut local = at.saturating_sub(base).min(buf.len());
    while !buf.is_char_boundary(local) {
        local -= 1;
    }
    base + local
}
