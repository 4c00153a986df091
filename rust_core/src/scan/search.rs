//! The search of one rule over one region of a text, and the checks that turn a regex match into a
//! candidate finding. Shared by the whole-text scan ([`super::Scanner::find`]) and the stream
//! redactor, which is what makes both give the same findings.
//!
//! A rule with keywords is searched only in regions around its keyword occurrences: each
//! occurrence opens a window of `max_len` bytes either side (any match containing it lies inside),
//! and overlapping windows merge into one region. A rule without keywords has one region, the
//! whole text. Inside a region the regex's matches are taken leftmost-first, one after another;
//! look-around (`\b`, `^`, `$`) sees the text around the region.

use memchr::memmem;
use regex_automata::{Anchored, Input};

use super::compile::CompiledRule;
use super::entropy::shannon;
use super::validate;

/// What a redaction writes in place of a secret: `[REDACTED:<rule id>]`.
pub const PLACEHOLDER_OPEN: &str = "[REDACTED:";

/// A text, or a window of a stream, with its absolute offset.
#[derive(Debug, Clone, Copy)]
pub struct Hay<'a> {
    /// The text held.
    pub text: &'a str,
    /// The absolute offset of `text`'s first byte.
    pub base: usize,
}

impl Hay<'_> {
    /// The absolute offset just past the text held.
    pub fn end(&self) -> usize {
        self.base + self.text.len()
    }
}

/// A span of the text where one rule's regex runs; `pos` is where its next search starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Absolute start.
    pub start: usize,
    /// Absolute end (exclusive); `usize::MAX` for a rule without keywords.
    pub end: usize,
    /// Absolute position of the next search (at least `start`).
    pub pos: usize,
}

/// A match of one rule that passed its checks: the secret's absolute byte span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Index of the rule.
    pub rule: usize,
    /// Absolute start of the secret.
    pub start: usize,
    /// Absolute end of the secret.
    pub end: usize,
    /// The action of the rule (1 log, 2 redact, 3 block): stronger actions win overlaps.
    pub tier: u8,
}

/// Context every rule needs on each side of a span it searches: one character for look-around, and
/// a whole placeholder (`[REDACTED:<longest id>]`), so that a match overlapping one is recognised.
pub fn context_len(longest_id: usize) -> usize {
    (PLACEHOLDER_OPEN.len() + longest_id + 1).max(4)
}

/// The checks a search needs besides the rule: which rule, its action, the context length.
#[derive(Debug, Clone, Copy)]
pub struct SearchArgs {
    /// Index of the rule.
    pub rule: usize,
    /// The rule's action (the candidate's tier).
    pub tier: u8,
    /// The context length ([`context_len`]).
    pub ctx: usize,
    /// `None`: every match of the region is final (the region's text is all there). `Some(limit)`:
    /// only matches starting at or before `limit` are final; the search stops before the first
    /// match after it and records where to resume.
    pub limit: Option<usize>,
}

/// Searches `region` of `hay` with `rule`, appending candidates to `out`.
///
/// Returns `true` when the region is done (searched to its end), `false` when it stopped at
/// `args.limit` (`region.pos` then says where the next search resumes).
pub fn search_region(
    rule: &CompiledRule,
    hay: Hay<'_>,
    region: &mut Region,
    args: SearchArgs,
    out: &mut Vec<Candidate>,
) -> bool {
    let bytes = hay.text.as_bytes();
    let span_end = region.end.min(hay.end());
    loop {
        let from = region.pos.max(region.start);
        if from >= span_end {
            return args.limit.is_none();
        }
        let input = Input::new(bytes).span(from - hay.base..span_end - hay.base);
        let Some(found) = rule.regex.search(&input) else {
            if let Some(limit) = args.limit {
                region.pos = region.pos.max(limit.saturating_add(1));
                return false;
            }
            return true;
        };
        let (start, end) = (found.start() + hay.base, found.end() + hay.base);
        if let Some(limit) = args.limit {
            if start > limit {
                region.pos = region.pos.max(limit.saturating_add(1));
                return false;
            }
        }
        if start == end {
            region.pos = end + 1;
            continue;
        }
        region.pos = end;
        if let Some((secret_start, secret_end)) = verify(rule, hay, start, end, span_end, args.ctx)
        {
            out.push(Candidate {
                rule: args.rule,
                start: secret_start,
                end: secret_end,
                tier: args.tier,
            });
        }
    }
}

/// Searches `rule` (one whose every match starts with a keyword) anchored at each keyword
/// occurrence start in `starts` (ascending) at or after `*pos`, appending candidates to `out`;
/// `*pos` moves past each match. With `args.limit`, stops before the first start after it and
/// returns how many starts it consumed.
pub fn search_anchored(
    rule: &CompiledRule,
    hay: Hay<'_>,
    starts: impl IntoIterator<Item = usize>,
    pos: &mut usize,
    args: SearchArgs,
    out: &mut Vec<Candidate>,
) -> usize {
    let bytes = hay.text.as_bytes();
    let mut consumed = 0;
    for start in starts {
        if args.limit.is_some_and(|limit| start > limit) {
            break;
        }
        consumed += 1;
        if start < *pos {
            continue;
        }
        let input = Input::new(bytes)
            .span(start - hay.base..bytes.len())
            .anchored(Anchored::Yes);
        let Some(found) = rule.regex.search(&input) else {
            continue;
        };
        let end = found.end() + hay.base;
        if end == start {
            continue;
        }
        *pos = end;
        if let Some((secret_start, secret_end)) = verify(rule, hay, start, end, hay.end(), args.ctx)
        {
            out.push(Candidate {
                rule: args.rule,
                start: secret_start,
                end: secret_end,
                tier: args.tier,
            });
        }
    }
    consumed
}

/// The secret span of the match `start..end` (absolute) if it passes the rule's checks: a keyword
/// in the match, a non-empty secret group, not inside a placeholder, the entropy, stopwords,
/// allowlist and validator.
fn verify(
    rule: &CompiledRule,
    hay: Hay<'_>,
    start: usize,
    end: usize,
    span_end: usize,
    ctx: usize,
) -> Option<(usize, usize)> {
    let text = hay.text;
    let local = |abs: usize| abs - hay.base;
    if let Some(keywords) = rule.keywords.as_ref().filter(|_| !rule.anchored) {
        if !keywords.is_match(&text[local(start)..local(end)]) {
            return None;
        }
    }
    let (secret_start, secret_end) = if rule.def.secret_group == 0 {
        (start, end)
    } else {
        let mut caps = rule.regex.create_captures();
        let input = Input::new(text.as_bytes())
            .span(local(start)..local(span_end))
            .anchored(Anchored::Yes);
        rule.regex.search_captures(&input, &mut caps);
        let group = caps.get_group(rule.def.secret_group)?;
        (group.start + hay.base, group.end + hay.base)
    };
    if secret_start >= secret_end || in_placeholder(hay, secret_start, secret_end, ctx) {
        return None;
    }
    let secret = &text[local(secret_start)..local(secret_end)];
    if let Some(minimum) = rule.def.entropy {
        if shannon(secret) < minimum {
            return None;
        }
    }
    if !rule.stopwords.is_empty() {
        let lower = secret.to_lowercase();
        if rule
            .stopwords
            .iter()
            .any(|word| lower.contains(word.as_str()))
        {
            return None;
        }
    }
    if rule.allowlist.iter().any(|allow| allow.is_match(secret)) {
        return None;
    }
    validate::check(rule.def.validator, secret).then_some((secret_start, secret_end))
}

/// Whether the span `start..end` (absolute) overlaps a placeholder `[REDACTED:<id>]` of at most
/// `ctx` bytes: text a redaction wrote is never found again.
fn in_placeholder(hay: Hay<'_>, start: usize, end: usize, ctx: usize) -> bool {
    let bytes = hay.text.as_bytes();
    let from = start.saturating_sub(ctx - 1).max(hay.base) - hay.base;
    let to = end - hay.base;
    memmem::find_iter(&bytes[from..to], PLACEHOLDER_OPEN).any(|offset| {
        let open = from + offset;
        let id_start = open + PLACEHOLDER_OPEN.len();
        let limit = (open + ctx).min(bytes.len());
        bytes[id_start.min(limit)..limit]
            .iter()
            .position(|&b| b == b']' || b.is_ascii_whitespace())
            .is_some_and(|i| {
                let close = id_start + i;
                i > 0 && bytes[close] == b']' && close + 1 + hay.base > start
            })
    })
}
