//! The routing-rules fixture shared by `benches/policy.rs` and `tests/policy.rs`: the 20 rules of
//! `tests/data/routing_rules.cedar`, 10 deployments, a request and its 10 candidates.
#![allow(dead_code)]

use _core::policy::{Deployment, Observed, RequestFacts, RoutePolicy};

/// The 20 rules.
pub const RULES: &str = include_str!("../../tests/data/routing_rules.cedar");

/// A deployment of `upstream`/`model` in `group`.
pub fn deployment(
    upstream: &str,
    provider: &str,
    group: &str,
    tags: &[&str],
    input: i64,
    output: i64,
) -> Deployment {
    Deployment {
        key: format!("{upstream}/{group}-model"),
        provider: provider.into(),
        upstream: upstream.into(),
        model: format!("{group}-model"),
        group: group.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        input_price_micro_usd: input,
        output_price_micro_usd: output,
    }
}

/// Ten deployments of one group, of every kind the rules tell apart.
pub fn deployments() -> Vec<Deployment> {
    vec![
        deployment(
            "openai-1",
            "openai",
            "fast",
            &["shared"],
            2_500_000,
            10_000_000,
        ),
        deployment("openai-2", "openai", "fast", &["eu"], 150_000, 600_000),
        deployment(
            "anthropic-1",
            "anthropic",
            "fast",
            &[],
            3_000_000,
            15_000_000,
        ),
        deployment(
            "bedrock-1",
            "bedrock",
            "fast",
            &["eu", "pool"],
            3_000_000,
            15_000_000,
        ),
        deployment(
            "vllm-local",
            "vllm",
            "fast",
            &["self-hosted", "gpu-a100"],
            0,
            0,
        ),
        deployment("vllm-2", "vllm", "fast", &["self-hosted", "eu"], 0, 0),
        deployment(
            "azure-1",
            "azure",
            "fast",
            &["eu", "deprecated"],
            2_500_000,
            10_000_000,
        ),
        deployment("gemini-1", "gemini", "fast", &[], 100_000, 400_000),
        deployment(
            "mistral-1",
            "mistral",
            "fast",
            &["eu", "shared"],
            200_000,
            600_000,
        ),
        deployment("groq-1", "groq", "fast", &["gpu-a100"], 50_000, 80_000),
    ]
}

/// The rules with the ten deployments registered (ids 0 to 9).
pub fn policy() -> RoutePolicy {
    let mut policy = RoutePolicy::new(RULES, "routing_rules.cedar").unwrap();
    for d in deployments() {
        policy.deployment(d);
    }
    policy
}

/// A streamed request of team platform with 5 USD left and a 2 s SLA.
pub fn request() -> RequestFacts<'static> {
    RequestFacts {
        team: "platform",
        key: "k1",
        user: "u1",
        classification: "",
        sla_ms: 2_000,
        budget_left_cents: 500,
        model: "fast",
        stream: true,
        ingress: "openai",
    }
}

/// The ten candidates: every deployment with its health now (one open circuit, one slow, one
/// failing).
pub fn candidates() -> Vec<Observed<'static>> {
    let health = [
        (900, 300, 0, "closed", 3),
        (1200, 450, 2, "closed", 12),
        (2500, 900, 0, "closed", 1),
        (800, 200, 0, "open", 0),
        (400, 120, 1, "closed", 4),
        (-1, -1, 0, "closed", 0),
        (700, 250, 0, "closed", 0),
        (1500, 700, 60, "half_open", 1),
        (1100, 350, 3, "closed", 9),
        (300, 90, 0, "closed", 20),
    ];
    health
        .iter()
        .enumerate()
        .map(
            |(i, &(latency_ms, ttft_ms, error_rate_pct, circuit, in_flight))| Observed {
                deployment: i,
                latency_ms,
                ttft_ms,
                error_rate_pct,
                circuit,
                in_flight,
            },
        )
        .collect()
}
