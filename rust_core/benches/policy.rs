//! Routing rules: one decision for 10 candidates under 20 rules (`tests/data/routing_rules.cedar`),
//! compiled (`RoutePolicy::decide`, and `RoutePolicy::order`, the router's call) and through Cedar's authorizer for every candidate
//! (`decide_with_cedar`, the reference); and the parts of the Cedar path: one `is_authorized` of
//! the 20 rules (and of 1) with the entities built beforehand, and building one candidate's
//! entities and request. Run: `cargo bench -p ferrogate_core --bench policy`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request, RestrictedExpression,
};
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "support/policy_fixture.rs"]
mod policy_fixture;

use policy_fixture::{candidates, policy, request, RULES};

/// One candidate's entities, context and request, as the Cedar path builds them.
fn cedar_request() -> (Request, Entities) {
    let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
    let l = RestrictedExpression::new_long;
    let key = EntityUid::from_str(r#"Key::"k1""#).unwrap();
    let dep = EntityUid::from_str(r#"Deployment::"vllm-local/fast-model""#).unwrap();
    let principal = Entity::new(
        key.clone(),
        HashMap::from([
            ("team".into(), s("platform")),
            ("key".into(), s("k1")),
            ("user".into(), s("u1")),
        ]),
        HashSet::new(),
    )
    .unwrap();
    let attrs: HashMap<String, RestrictedExpression> = [
        ("provider", s("vllm")),
        ("upstream", s("vllm-local")),
        ("model", s("fast-model")),
        ("group", s("fast")),
        (
            "tags",
            RestrictedExpression::new_set([s("self-hosted"), s("gpu-a100")]),
        ),
        ("input_price_micro_usd", l(0)),
        ("output_price_micro_usd", l(0)),
        ("latency_ms", l(400)),
        ("ttft_ms", l(120)),
        ("error_rate_pct", l(1)),
        ("circuit", s("closed")),
        ("in_flight", l(4)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let resource = Entity::new(dep.clone(), attrs, HashSet::new()).unwrap();
    let context = Context::from_pairs([
        ("classification".to_owned(), s("")),
        ("sla_ms".to_owned(), l(2000)),
        ("budget_left_cents".to_owned(), l(500)),
        ("model".to_owned(), s("fast")),
        ("stream".to_owned(), RestrictedExpression::new_bool(true)),
        ("ingress".to_owned(), s("openai")),
    ])
    .unwrap();
    let action = EntityUid::from_str(r#"Action::"route""#).unwrap();
    let entities = Entities::from_entities([principal, resource], None).unwrap();
    (
        Request::new(key, action, dep, context, None).unwrap(),
        entities,
    )
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let req = request();
    let cands = candidates();
    assert_eq!(
        policy.decide(&req, &cands).unwrap(),
        policy.decide_with_cedar(&req, &cands).unwrap()
    );
    let mut group = c.benchmark_group("policy");
    group.bench_function("decide_10_candidates_20_rules", |b| {
        b.iter(|| black_box(policy.decide(black_box(&req), black_box(&cands)).unwrap()))
    });
    group.bench_function("order_10_candidates_20_rules", |b| {
        b.iter(|| black_box(policy.order(black_box(&req), black_box(&cands)).unwrap()))
    });
    group.bench_function("decide_with_cedar_10_candidates_20_rules", |b| {
        b.iter(|| {
            black_box(
                policy
                    .decide_with_cedar(black_box(&req), black_box(&cands))
                    .unwrap(),
            )
        })
    });
    let mut set = PolicySet::from_str(RULES).unwrap();
    set.add(
        cedar_policy::Policy::parse(
            Some(cedar_policy::PolicyId::new("base")),
            "permit(principal, action, resource);",
        )
        .unwrap(),
    )
    .unwrap();
    let authorizer = Authorizer::new();
    let (request, entities) = cedar_request();
    group.bench_function("cedar_is_authorized_20_rules", |b| {
        b.iter(|| black_box(authorizer.is_authorized(black_box(&request), &set, &entities)))
    });
    let one = PolicySet::from_str(
        r#"forbid(principal, action, resource) when { resource.circuit == "open" };"#,
    )
    .unwrap();
    group.bench_function("cedar_is_authorized_1_rule", |b| {
        b.iter(|| black_box(authorizer.is_authorized(black_box(&request), &one, &entities)))
    });
    group.bench_function("cedar_build_entities_and_request", |b| {
        b.iter(|| black_box(cedar_request()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
