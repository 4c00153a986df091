//! [`Policy`]: a model group's circuit breaker and retry budget settings, checked once and kept in
//! nanoseconds for the hot path.
//!
//! The settings are `CircuitSettings` and the budget fields of `RetrySettings`
//! (`python/ferrogate/config/routing.py`), plus `routing.latency_alpha`.

use crate::circuit::cells::BUCKETS;
use crate::error::CircuitError;

/// The longest duration a setting may have (seconds): ten years.
const MAX_SECONDS: f64 = 315_576_000.0;

/// The settings a [`Policy`] is built from (the configuration's names and units).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    /// Breakers trip and hold requests back (`false`: attempts are still counted, never refused).
    pub enabled: bool,
    /// The sliding window failures are counted over.
    pub window_s: f64,
    /// The error rate counts from this many attempts in the window.
    pub min_requests: u64,
    /// Open at this share of failed attempts in the window (0 < rate <= 1).
    pub error_rate: f64,
    /// Open after this many failed attempts in a row.
    pub consecutive: u32,
    /// The first cool-down.
    pub cooldown_s: f64,
    /// Cool-downs double up to this; also what a `Retry-After` may lengthen one to, and how long
    /// a half-open probe that never reports (its worker died) holds its place.
    pub cooldown_max_s: f64,
    /// Half-open probes let through at once.
    pub probes: u32,
    /// The weight of the newest sample in the latency EWMAs (0 < alpha <= 1).
    pub latency_alpha: f64,
    /// Retries at most this percentage of requests per budget window.
    pub retry_budget_pct: f64,
    /// Retries always allowed per budget window.
    pub retry_budget_min: u64,
    /// The retry budget's window.
    pub retry_budget_window_s: f64,
}

impl Default for PolicySettings {
    /// The configuration's defaults.
    fn default() -> Self {
        Self {
            enabled: true,
            window_s: 30.0,
            min_requests: 10,
            error_rate: 0.5,
            consecutive: 5,
            cooldown_s: 5.0,
            cooldown_max_s: 300.0,
            probes: 1,
            latency_alpha: 0.2,
            retry_budget_pct: 20.0,
            retry_budget_min: 10,
            retry_budget_window_s: 10.0,
        }
    }
}

/// Checked settings in the units the table uses. Built once per model group.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    settings: PolicySettings,
    /// Whether breakers trip.
    pub(crate) enabled: bool,
    /// Width of one window bucket (`window_s / BUCKETS`).
    pub(crate) bucket_ns: u64,
    pub(crate) min_requests: u64,
    pub(crate) error_rate: f64,
    pub(crate) consecutive: u32,
    pub(crate) cooldown_ns: u64,
    pub(crate) cooldown_max_ns: u64,
    pub(crate) probes: u16,
    pub(crate) alpha: f64,
    /// `retry_budget_pct / 100`.
    pub(crate) budget_share: f64,
    pub(crate) budget_min: u64,
    pub(crate) budget_window_ns: u64,
}

/// `seconds` in ns, when positive, finite, at most [`MAX_SECONDS`] and at least `min_ns`.
fn duration(name: &str, seconds: f64, min_ns: u64) -> Result<u64, CircuitError> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= MAX_SECONDS) {
        return Err(CircuitError::InvalidPolicy(format!(
            "{name} must be a positive number of seconds up to {MAX_SECONDS}, not {seconds}"
        )));
    }
    let ns = (seconds * 1e9).round() as u64;
    if ns < min_ns {
        return Err(CircuitError::InvalidPolicy(format!(
            "{name} must be at least {} s, not {seconds}",
            min_ns as f64 / 1e9
        )));
    }
    Ok(ns)
}

fn share(name: &str, value: f64, max: f64, zero_ok: bool) -> Result<f64, CircuitError> {
    let low_ok = if zero_ok { value >= 0.0 } else { value > 0.0 };
    if value.is_finite() && low_ok && value <= max {
        return Ok(value);
    }
    let low = if zero_ok { "from 0" } else { "above 0" };
    Err(CircuitError::InvalidPolicy(format!(
        "{name} must be {low} to {max}, not {value}"
    )))
}

impl Policy {
    /// Checks `settings`: durations positive (the window at least 10 µs, one µs per bucket),
    /// `cooldown_max_s >= cooldown_s`, counts at least 1 (`retry_budget_min` at least 0),
    /// `probes` at most 65535, rates in range. Returns [`CircuitError::InvalidPolicy`] naming the
    /// setting.
    pub fn new(settings: PolicySettings) -> Result<Self, CircuitError> {
        let s = &settings;
        let window_ns = duration("window_s", s.window_s, BUCKETS as u64 * 1_000)?;
        let cooldown_ns = duration("cooldown_s", s.cooldown_s, 1)?;
        let cooldown_max_ns = duration("cooldown_max_s", s.cooldown_max_s, 1)?;
        if cooldown_max_ns < cooldown_ns {
            return Err(CircuitError::InvalidPolicy(
                "cooldown_max_s must be at least cooldown_s".to_owned(),
            ));
        }
        let positive = |name: &str, n: u64| {
            if n == 0 {
                Err(CircuitError::InvalidPolicy(format!(
                    "{name} must be at least 1"
                )))
            } else {
                Ok(n)
            }
        };
        let min_requests = positive("min_requests", s.min_requests)?;
        let consecutive = positive("consecutive", u64::from(s.consecutive))?;
        let probes = u16::try_from(positive("probes", u64::from(s.probes))?).map_err(|_| {
            CircuitError::InvalidPolicy(format!("probes must be at most 65535, not {}", s.probes))
        })?;
        Ok(Self {
            enabled: s.enabled,
            bucket_ns: window_ns / BUCKETS as u64,
            min_requests,
            error_rate: share("error_rate", s.error_rate, 1.0, false)?,
            consecutive: consecutive as u32,
            cooldown_ns,
            cooldown_max_ns,
            probes,
            alpha: share("latency_alpha", s.latency_alpha, 1.0, false)?,
            budget_share: share("retry_budget_pct", s.retry_budget_pct, 100.0, true)? / 100.0,
            budget_min: s.retry_budget_min,
            budget_window_ns: duration("retry_budget_window_s", s.retry_budget_window_s, 1)?,
            settings,
        })
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The cool-down of trip number `trips` in a row (1 for the first): `cooldown_s` doubled
    /// `trips - 1` times, or `retry_after_s` when positive, capped at `cooldown_max_s` either way.
    pub fn cooldown_ns(&self, trips: u8, retry_after_s: f64) -> u64 {
        if retry_after_s.is_finite() && retry_after_s > 0.0 {
            let ns = (retry_after_s.min(MAX_SECONDS) * 1e9).round() as u64;
            return ns.clamp(1, self.cooldown_max_ns);
        }
        let doublings = u32::from(trips.saturating_sub(1)).min(63);
        self.cooldown_ns
            .saturating_mul(1u64 << doublings)
            .min(self.cooldown_max_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_cooldowns_double_to_the_cap() {
        let p = Policy::new(PolicySettings::default()).unwrap();
        let s = 1_000_000_000;
        assert_eq!(p.bucket_ns, 3 * s);
        let cooldowns: Vec<u64> = (1..=9).map(|t| p.cooldown_ns(t, 0.0) / s).collect();
        assert_eq!(cooldowns, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(p.cooldown_ns(255, 0.0), 300 * s);
        // Retry-After: shorter or longer, never past the cap
        assert_eq!(p.cooldown_ns(3, 1.5), 1_500_000_000);
        assert_eq!(p.cooldown_ns(1, 60.0), 60 * s);
        assert_eq!(p.cooldown_ns(1, 1e9), 300 * s);
        assert_eq!(p.cooldown_ns(1, f64::NAN), 5 * s);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let bad = [
            PolicySettings {
                window_s: 0.0,
                ..PolicySettings::default()
            },
            PolicySettings {
                cooldown_max_s: 1.0,
                ..PolicySettings::default()
            },
            PolicySettings {
                error_rate: 1.5,
                ..PolicySettings::default()
            },
            PolicySettings {
                probes: 70_000,
                ..PolicySettings::default()
            },
            PolicySettings {
                retry_budget_pct: -1.0,
                ..PolicySettings::default()
            },
        ];
        let names = [
            "window_s",
            "cooldown_max_s",
            "error_rate",
            "probes",
            "retry_budget_pct",
        ];
        for (settings, name) in bad.into_iter().zip(names) {
            let message = Policy::new(settings).unwrap_err().to_string();
            assert!(message.contains(name), "{message}");
        }
    }
}
