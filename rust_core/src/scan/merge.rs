//! Resolving overlapping candidates into findings.
//!
//! Candidates of masking rules (redact, block) that overlap form one finding spanning all of them,
//! so that no part of any candidate survives a redaction; it is named after its strongest
//! candidate (block before redact, then the earlier, then the longer, then the lower rule index).
//! Log candidates that overlap no masking finding are taken earliest (then longest) first.

use std::cmp::Ordering;

use super::scanner::LOG;
use super::search::Candidate;
use super::Finding;

/// The order in which candidates are taken: earlier, then longer, then lower rule.
pub fn order(a: &Candidate, b: &Candidate) -> Ordering {
    a.start
        .cmp(&b.start)
        .then(b.end.cmp(&a.end))
        .then(a.rule.cmp(&b.rule))
}

/// Whether candidate `a` names a finding rather than `b`: stronger action, then [`order`].
pub fn better(a: &Candidate, b: &Candidate) -> bool {
    a.tier.cmp(&b.tier).then_with(|| order(b, a)) == Ordering::Greater
}

/// Whether `start..end` overlaps one of `taken` (sorted, non-overlapping spans).
pub fn overlaps(taken: &[(usize, usize)], start: usize, end: usize) -> bool {
    let first = taken.partition_point(|&(_, taken_end)| taken_end <= start);
    taken
        .get(first)
        .is_some_and(|&(taken_start, _)| taken_start < end)
}

/// A masking finding being built: the union of overlapping candidates and the best of them.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// Start of the union.
    pub start: usize,
    /// End of the union.
    pub end: usize,
    /// The candidate that names the finding.
    pub best: Candidate,
}

impl Group {
    /// A group of one candidate.
    pub fn new(candidate: Candidate) -> Group {
        Group {
            start: candidate.start,
            end: candidate.end,
            best: candidate,
        }
    }

    /// Adds `candidate` if it overlaps the group (it starts at or after the group's start);
    /// returns whether it did.
    pub fn absorb(&mut self, candidate: &Candidate) -> bool {
        if candidate.start >= self.end {
            return false;
        }
        self.end = self.end.max(candidate.end);
        if better(candidate, &self.best) {
            self.best = *candidate;
        }
        true
    }

    /// The finding the group is.
    pub fn finding(&self) -> Finding {
        Finding {
            rule: self.best.rule,
            start: self.start,
            end: self.end,
        }
    }
}

/// Turns `candidates` (consumed) into sorted, non-overlapping findings appended to `out`.
pub fn resolve(candidates: &mut Vec<Candidate>, out: &mut Vec<Finding>) {
    let first = out.len();
    candidates.sort_unstable_by(order);
    let mut masks: Vec<(usize, usize)> = Vec::new();
    let mut group: Option<Group> = None;
    for candidate in candidates.iter().filter(|c| c.tier > LOG) {
        if group.as_mut().is_some_and(|g| g.absorb(candidate)) {
            continue;
        }
        if let Some(done) = group.replace(Group::new(*candidate)) {
            masks.push((done.start, done.end));
            out.push(done.finding());
        }
    }
    if let Some(done) = group {
        masks.push((done.start, done.end));
        out.push(done.finding());
    }
    let mut last_end = 0;
    for candidate in candidates.iter().filter(|c| c.tier == LOG) {
        if candidate.start >= last_end && !overlaps(&masks, candidate.start, candidate.end) {
            last_end = candidate.end;
            out.push(Finding {
                rule: candidate.rule,
                start: candidate.start,
                end: candidate.end,
            });
        }
    }
    candidates.clear();
    out[first..].sort_unstable_by_key(|f| (f.start, f.end));
}
