//! The prefilter: where each rule's regex can match at all.
//!
//! - Keywords: every rule's keywords, ASCII case-insensitive, found in one pass per group of up to
//!   16 keywords with the SIMD "Teddy" searcher of `aho-corasick` over an ASCII-lowercased copy of
//!   the text (one Aho-Corasick DFA over all keywords costs a table lookup per byte, several times
//!   slower); one-byte keywords by `memchr`. Every occurrence of every keyword is found,
//!   overlapping ones too.
//! - Required bytes: a rule without keywords whose every match holds `count` bytes of a set
//!   ([`super::anchor::required_bytes`], e.g. the ten digits of a phone number) runs only where
//!   `count` of them fall within its longest match; rules with the same set share one pass.

use aho_corasick::{packed, AhoCorasick, Input, MatchKind, Span};

use super::anchor::ByteSet;
use super::compile::CompiledRule;
use super::search::Region;

/// Keywords per SIMD pass: Teddy's 16 buckets, one or two keywords each, keep false hits rare.
const GROUP: usize = 16;

/// One occurrence of a keyword of a rule (absolute offsets); `key` orders a rule's occurrences
/// (their end for a windowed rule, their start for one that runs anchored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    /// The rule.
    pub rule: usize,
    /// The order key.
    pub key: usize,
    /// Start of the occurrence.
    pub start: usize,
    /// End of the occurrence.
    pub end: usize,
}

#[derive(Debug)]
enum Finder {
    /// Up to three one-byte keywords (`memchr`).
    Bytes(Vec<u8>),
    Teddy(packed::Searcher),
    Automaton(AhoCorasick),
}

impl Finder {
    fn find(&self, haystack: &[u8], from: usize) -> Option<usize> {
        let rest = &haystack[from.min(haystack.len())..];
        match self {
            Finder::Bytes(bytes) => match bytes[..] {
                [a] => memchr::memchr(a, rest),
                [a, b] => memchr::memchr2(a, b, rest),
                [a, b, c, ..] => memchr::memchr3(a, b, c, rest),
                [] => None,
            }
            .map(|i| from + i),
            Finder::Teddy(searcher) => searcher
                .find_in(haystack, Span::from(from..haystack.len()))
                .map(|m| m.start()),
            Finder::Automaton(automaton) => automaton
                .find(Input::new(haystack).span(from..haystack.len()))
                .map(|m| m.start()),
        }
    }
}

/// The keyword groups and byte sets of a scanner's rules.
#[derive(Debug)]
pub struct Prefilter {
    /// Distinct keywords, lowercased.
    patterns: Vec<Vec<u8>>,
    /// Per keyword, the rules that have it.
    rules_of: Vec<Vec<usize>>,
    /// Per rule, whether its occurrences are ordered by start (it runs anchored).
    anchored: Vec<bool>,
    groups: Vec<(Finder, Vec<usize>)>,
    longest: usize,
    /// Distinct required-byte sets and the rules (without keywords) that use each.
    sets: Vec<(ByteSet, Vec<usize>)>,
    /// Per rule with required bytes: how many a match holds, and its `max_len`.
    runs: Vec<Option<(usize, usize)>>,
}

impl Prefilter {
    /// The prefilter of `rules`.
    pub fn new(rules: &[CompiledRule]) -> Result<Prefilter, aho_corasick::BuildError> {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut rules_of: Vec<Vec<usize>> = Vec::new();
        let mut sets: Vec<(ByteSet, Vec<usize>)> = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            for keyword in &rule.folded_keywords {
                let slot = match patterns.iter().position(|p| p == keyword) {
                    Some(slot) => slot,
                    None => {
                        patterns.push(keyword.clone());
                        rules_of.push(Vec::new());
                        patterns.len() - 1
                    }
                };
                if !rules_of[slot].contains(&index) {
                    rules_of[slot].push(index);
                }
            }
            if let Some(required) = &rule.required {
                match sets.iter_mut().find(|(s, _)| *s == required.set) {
                    Some((_, users)) => users.push(index),
                    None => sets.push((required.set.clone(), vec![index])),
                }
            }
        }
        // group keywords of similar length and prefix: Teddy's fingerprint is the group's shortest
        // keyword (up to 3 bytes), and keywords sharing a prefix share a bucket
        let mut order: Vec<usize> = (0..patterns.len()).collect();
        order.sort_by(|&a, &b| {
            let class = |p: &Vec<u8>| p.len().min(3);
            class(&patterns[b])
                .cmp(&class(&patterns[a]))
                .then_with(|| patterns[a].cmp(&patterns[b]))
        });
        let mut groups = Vec::new();
        let (single, order): (Vec<usize>, Vec<usize>) =
            order.into_iter().partition(|&i| patterns[i].len() == 1);
        for bytes in single.chunks(3) {
            groups.push((
                Finder::Bytes(bytes.iter().map(|&i| patterns[i][0]).collect()),
                bytes.to_vec(),
            ));
        }
        for chunk in order.chunks(GROUP) {
            let members: Vec<&[u8]> = chunk.iter().map(|&i| patterns[i].as_slice()).collect();
            let mut config = packed::Config::new();
            config.match_kind(packed::MatchKind::LeftmostFirst);
            let finder = match config.builder().extend(&members).build() {
                Some(searcher) => Finder::Teddy(searcher),
                None => Finder::Automaton(
                    AhoCorasick::builder()
                        .match_kind(MatchKind::LeftmostFirst)
                        .build(&members)?,
                ),
            };
            groups.push((finder, chunk.to_vec()));
        }
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        Ok(Prefilter {
            patterns,
            rules_of,
            anchored: rules.iter().map(|r| r.anchored).collect(),
            runs: rules
                .iter()
                .map(|r| r.required.as_ref().map(|q| (q.count, r.max_len)))
                .collect(),
            groups,
            longest,
            sets,
        })
    }

    /// The length of the longest keyword (0 when there is none).
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// Appends to `out` every occurrence in `folded` (the ASCII-lowercased text from absolute
    /// offset `base`) of a keyword of an enabled rule that ends after `min_end`.
    pub fn keyword_hits(
        &self,
        folded: &[u8],
        base: usize,
        min_end: usize,
        actions: &[u8],
        out: &mut Vec<Hit>,
    ) {
        for (finder, members) in &self.groups {
            let mut from = 0;
            while let Some(at) = finder.find(folded, from) {
                for &pattern in members {
                    let keyword = &self.patterns[pattern];
                    if folded[at..].starts_with(keyword) && base + at + keyword.len() > min_end {
                        for &rule in &self.rules_of[pattern] {
                            if actions.get(rule).is_some_and(|&a| a != 0) {
                                let (start, end) = (base + at, base + at + keyword.len());
                                let key = if self.anchored[rule] { start } else { end };
                                out.push(Hit {
                                    rule,
                                    key,
                                    start,
                                    end,
                                });
                            }
                        }
                    }
                }
                from = at + 1;
            }
        }
    }

    /// Calls `found(rule, first, end)` for each enabled rule with required bytes and each run of
    /// its `count` last required bytes that fits in its `max_len`: `first` is the run's first
    /// byte's absolute offset and `end` is just past its last (a window as of a keyword
    /// occurrence `first..end`), in order. `text` is held from absolute `base`; `recent` keeps
    /// each rule's last required bytes between calls (a stream's pieces); `positions` is scratch.
    pub fn byte_hits(
        &self,
        text: &[u8],
        base: usize,
        actions: &[u8],
        positions: &mut Vec<usize>,
        recent: &mut [Vec<usize>],
        mut found: impl FnMut(usize, usize, usize),
    ) {
        let enabled = |rule: usize| actions.get(rule).is_some_and(|&a| a != 0);
        for (set, users) in &self.sets {
            if !users.iter().any(|&r| enabled(r)) {
                continue;
            }
            positions.clear();
            set.positions(text, base, positions);
            for &rule in users.iter().filter(|&&r| enabled(r)) {
                let Some((count, max_len)) = self.runs[rule] else {
                    continue;
                };
                // the rule's last `count - 1` required bytes before `text` (`run`), then those in
                // it (`positions`, shared by the set's rules: read in place, not copied)
                let run = &mut recent[rule];
                let kept = run.len();
                let total = kept + positions.len();
                let at = |k: usize| {
                    if k < kept {
                        run[k]
                    } else {
                        positions[k - kept]
                    }
                };
                for last in (count - 1).max(kept)..total.min(kept + count - 1) {
                    let (first, end) = (at(last + 1 - count), at(last));
                    if end - first < max_len {
                        found(rule, first, end + 1);
                    }
                }
                // past the first `count - 1`, every run lies in `positions` alone
                for pair in positions.windows(count) {
                    let (first, end) = (pair[0], pair[count - 1]);
                    if end - first < max_len {
                        found(rule, first, end + 1);
                    }
                }
                let keep = total.saturating_sub(count - 1);
                if keep >= kept {
                    run.clear();
                    run.extend_from_slice(&positions[keep - kept..]);
                } else {
                    run.drain(..keep);
                    run.extend_from_slice(positions);
                }
            }
        }
    }
}

/// The window of an occurrence `start..end` of a keyword (or required byte) of a rule whose
/// matches are at most `max_len` bytes: every match containing the occurrence lies inside it.
pub fn window(start: usize, end: usize, max_len: usize) -> Region {
    let from = end.saturating_sub(max_len);
    Region {
        start: from,
        end: start.saturating_add(max_len),
        pos: from,
    }
}

/// Adds `window` to a rule's regions, merged into the last one when they overlap or touch
/// (windows arrive in order of their starts).
pub fn add_window(last: Option<&mut Region>, window: Region) -> Option<Region> {
    match last {
        Some(region) if window.start <= region.end => {
            region.end = region.end.max(window.end);
            None
        }
        _ => Some(window),
    }
}

/// `text` ASCII-lowercased into `out` (replacing its content).
pub fn fold_into(text: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(text.iter().map(u8::to_ascii_lowercase));
}
