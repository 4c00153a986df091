//! OpenAI's `x-ratelimit-*` response headers from the decisions of one request's buckets.
//!
//! A request is checked against several buckets (key, user, team, deployment; requests and
//! tokens per minute); the headers show, for each kind, the tightest bucket: the fewest units
//! remaining, the first on ties. Values are OpenAI's: the limit and the remaining units as
//! integers, the time until the bucket is full again as `20ms`, `1s`, `6m0s` (at most a day).
//!
//! Example:
//! ```
//! use _core::ratelimit::headers::{duration, rate_headers, Taken};
//! assert_eq!(duration(0.0004), "1ms");
//! assert_eq!(duration(360.0), "6m0s");
//! let taken = [
//!     Taken { limit: 100.0, remaining: 99.0, reset_s: 0.6, tokens: false },
//!     Taken { limit: 10.0, remaining: 9.0, reset_s: 6.0, tokens: false },
//! ];
//! let headers = rate_headers(&taken);
//! assert_eq!(headers[0], ("x-ratelimit-limit-requests", "10".to_string()));
//! assert_eq!(headers.len(), 3);
//! ```

/// The longest reset shown (a bucket in debt may take longer to refill).
const MAX_RESET_S: f64 = 86_400.0;

/// The three header names of each kind: limit, remaining, reset.
pub const REQUESTS: [&str; 3] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
];
/// See [`REQUESTS`].
pub const TOKENS: [&str; 3] = [
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// One bucket's decision, as the headers need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taken {
    /// The bucket's limit per period.
    pub limit: f64,
    /// Units left after the decision (`>= 0`).
    pub remaining: f64,
    /// Seconds until the bucket is full again.
    pub reset_s: f64,
    /// A tokens bucket (`false`: requests).
    pub tokens: bool,
}

/// OpenAI's reset format: `20ms` under a second (at least `1ms`), else whole seconds rounded
/// up, as `6m0s` from a minute.
pub fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        let ms = (seconds * 1000.0).ceil();
        return if ms > 1.0 {
            format!("{ms:.0}ms")
        } else {
            "1ms".to_string()
        };
    }
    let whole = seconds.ceil() as u64;
    if whole < 60 {
        format!("{whole}s")
    } else {
        format!("{}m{}s", whole / 60, whole % 60)
    }
}

/// The tightest bucket of each kind: `(requests, tokens)`.
pub fn tightest(taken: &[Taken]) -> (Option<&Taken>, Option<&Taken>) {
    let mut requests: Option<&Taken> = None;
    let mut tokens: Option<&Taken> = None;
    for item in taken {
        let best = if item.tokens {
            &mut tokens
        } else {
            &mut requests
        };
        if best.is_none_or(|b| item.remaining < b.remaining) {
            *best = Some(item);
        }
    }
    (requests, tokens)
}

/// The three `(name, value)` headers of `taken` under `names` ([`REQUESTS`] or [`TOKENS`]).
pub fn headers_of(names: &[&'static str; 3], taken: &Taken) -> [(&'static str, String); 3] {
    [
        (names[0], format!("{:.0}", taken.limit.floor())),
        (names[1], format!("{:.0}", taken.remaining.max(0.0).floor())),
        (names[2], duration(taken.reset_s.min(MAX_RESET_S))),
    ]
}

/// The headers for the tightest bucket of each kind in `taken`: requests first, then tokens.
pub fn rate_headers(taken: &[Taken]) -> Vec<(&'static str, String)> {
    let (requests, tokens) = tightest(taken);
    let mut out = Vec::with_capacity(6);
    if let Some(t) = requests {
        out.extend(headers_of(&REQUESTS, t));
    }
    if let Some(t) = tokens {
        out.extend(headers_of(&TOKENS, t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(limit: f64, remaining: f64, reset_s: f64, tokens: bool) -> Taken {
        Taken {
            limit,
            remaining,
            reset_s,
            tokens,
        }
    }

    #[test]
    fn durations_match_openai() {
        assert_eq!(duration(0.0), "1ms");
        assert_eq!(duration(0.001), "1ms");
        assert_eq!(duration(0.0201), "21ms");
        assert_eq!(duration(0.999), "999ms");
        assert_eq!(duration(1.0), "1s");
        assert_eq!(duration(1.2), "2s");
        assert_eq!(duration(59.5), "1m0s");
        assert_eq!(duration(61.0), "1m1s");
        assert_eq!(duration(86_400.0), "1440m0s");
    }

    #[test]
    fn tightest_of_each_kind_first_on_ties() {
        let all = [
            taken(100.0, 50.0, 1.0, false),
            taken(10.0, 5.0, 2.0, false),
            taken(20.0, 5.0, 3.0, false),
            taken(1000.0, 900.0, 4.0, true),
        ];
        let (r, t) = tightest(&all);
        assert_eq!(r, Some(&all[1]));
        assert_eq!(t, Some(&all[3]));
    }

    #[test]
    fn values_are_integers_and_reset_is_capped() {
        let h = rate_headers(&[taken(1e12, 999_999_995_883.7, 1e9, true)]);
        assert_eq!(
            h,
            vec![
                ("x-ratelimit-limit-tokens", "1000000000000".to_string()),
                ("x-ratelimit-remaining-tokens", "999999995883".to_string()),
                ("x-ratelimit-reset-tokens", "1440m0s".to_string()),
            ]
        );
        assert!(rate_headers(&[]).is_empty());
    }
}
