//! The compiled routing-rule evaluator against Cedar's authorizer: random rule sets (every
//! construct the compiler covers: arithmetic that overflows, `if`, `like`, set methods, `in`,
//! `is`, `has`, scopes, `unless`) over random requests and candidates decide the same through
//! `RoutePolicy::decide` and `RoutePolicy::decide_with_cedar`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use _core::policy::{Deployment, Observed, RequestFacts, RoutePolicy};
use proptest::prelude::*;

const STRS: &[&str] = &[
    "",
    "a",
    "fast",
    "openai",
    "self-hosted",
    "eu",
    "closed",
    "open",
    "k1",
    "t1",
];
const LONGS: &[i64] = &[-1, 0, 1, 5, 100, 1000, 9_223_372_036_854_775_807];
const LONG_ATTRS: &[&str] = &[
    "context.sla_ms",
    "context.budget_left_cents",
    "resource.input_price_micro_usd",
    "resource.output_price_micro_usd",
    "resource.latency_ms",
    "resource.ttft_ms",
    "resource.error_rate_pct",
    "resource.in_flight",
];
const STR_ATTRS: &[&str] = &[
    "principal.team",
    "principal.key",
    "principal.user",
    "context.classification",
    "context.model",
    "context.ingress",
    "resource.provider",
    "resource.upstream",
    "resource.model",
    "resource.group",
    "resource.circuit",
];
const PATTERNS: &[&str] = &["*", "fast*", "*a*", "open", "a*b", "*-hosted", ""];

fn pick(items: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(items).prop_map(str::to_owned).boxed()
}

fn str_lit() -> BoxedStrategy<String> {
    prop::sample::select(STRS)
        .prop_map(|s| format!("{s:?}"))
        .boxed()
}

fn str_set() -> BoxedStrategy<String> {
    prop::collection::vec(prop::sample::select(STRS), 1..3)
        .prop_map(|items| {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .boxed()
}

fn long_expr(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        pick(LONG_ATTRS),
        prop::sample::select(LONGS).prop_map(|n| n.to_string())
    ]
    .boxed();
    if depth == 0 {
        return leaf;
    }
    let sub = || long_expr(depth - 1);
    prop_oneof![
        3 => leaf,
        1 => (sub(), prop::sample::select(&["+", "-", "*"][..]), sub()).prop_map(|(a, op, b)| format!("({a} {op} {b})")),
        1 => sub().prop_map(|a| format!("(-({a}))")),
        1 => (bool_expr(depth - 1), sub(), sub()).prop_map(|(c, a, b)| format!("(if {c} then {a} else {b})")),
    ]
    .boxed()
}

fn str_expr(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![pick(STR_ATTRS), str_lit()].boxed();
    if depth == 0 {
        return leaf;
    }
    prop_oneof![
        3 => leaf,
        1 => (bool_expr(depth - 1), str_expr(depth - 1), str_expr(depth - 1))
            .prop_map(|(c, a, b)| format!("(if {c} then {a} else {b})")),
    ]
    .boxed()
}

fn bool_leaf(depth: u32) -> BoxedStrategy<String> {
    let cmp = prop::sample::select(&["<", "<=", ">", ">=", "==", "!="][..]);
    prop_oneof![
        Just("context.stream".to_owned()),
        Just("true".to_owned()),
        (long_expr(depth), cmp, long_expr(depth)).prop_map(|(a, op, b)| format!("({a} {op} {b})")),
        (
            str_expr(depth),
            prop::sample::select(&["==", "!="][..]),
            str_expr(depth)
        )
            .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
        (str_expr(depth), pick(PATTERNS)).prop_map(|(a, p)| format!("({a} like {p:?})")),
        str_expr(depth).prop_map(|s| format!("resource.tags.contains({s})")),
        str_set().prop_map(|s| format!("resource.tags.containsAny({s})")),
        str_set().prop_map(|s| format!("resource.tags.containsAll({s})")),
        str_set().prop_map(|s| format!("{s}.containsAll(resource.tags)")),
        (str_set(), str_expr(depth)).prop_map(|(s, e)| format!("{s}.contains({e})")),
        str_set().prop_map(|s| format!("(resource.tags == {s})")),
        Just("resource.tags.isEmpty()".to_owned()),
        Just(r#"(principal == Key::"k1")"#.to_owned()),
        Just(r#"(resource in [Deployment::"d0", Deployment::"d2"])"#.to_owned()),
        Just(r#"(resource is Deployment)"#.to_owned()),
        Just(r#"(principal is Key in Key::"k1")"#.to_owned()),
        Just("(context has sla_ms)".to_owned()),
        Just("(principal has team)".to_owned()),
    ]
    .boxed()
}

fn bool_expr(depth: u32) -> BoxedStrategy<String> {
    if depth == 0 {
        return bool_leaf(0);
    }
    let sub = || bool_expr(depth - 1);
    prop_oneof![
        3 => bool_leaf(depth - 1),
        1 => sub().prop_map(|a| format!("(!{a})")),
        1 => (sub(), sub()).prop_map(|(a, b)| format!("({a} && {b})")),
        1 => (sub(), sub()).prop_map(|(a, b)| format!("({a} || {b})")),
        1 => (sub(), sub(), sub()).prop_map(|(c, a, b)| format!("(if {c} then {a} else {b})")),
    ]
    .boxed()
}

fn policy_text() -> impl Strategy<Value = String> {
    let principal = pick(&[
        "principal",
        r#"principal == Key::"k1""#,
        r#"principal in Key::"k2""#,
        "principal is Key",
    ]);
    let action = pick(&[
        "action",
        r#"action == Action::"route""#,
        r#"action in [Action::"route"]"#,
    ]);
    let resource = pick(&[
        "resource",
        r#"resource == Deployment::"d0""#,
        "resource is Deployment",
    ]);
    let condition = (prop::bool::ANY, bool_expr(2))
        .prop_map(|(when, body)| format!("{} {{ {body} }}", if when { "when" } else { "unless" }));
    (
        prop::bool::ANY,
        -5i64..50,
        principal,
        action,
        resource,
        prop::collection::vec(condition, 0..3),
    )
        .prop_map(|(permit, priority, p, a, r, conditions)| {
            let head = if permit {
                format!("@priority(\"{priority}\")\npermit")
            } else {
                "forbid".to_owned()
            };
            format!("{head}({p}, {a}, {r})\n{};\n", conditions.join("\n"))
        })
}

fn deployment() -> impl Strategy<Value = Deployment> {
    let s = || prop::sample::select(STRS).prop_map(str::to_owned);
    let n = || prop::sample::select(LONGS);
    (
        s(),
        s(),
        s(),
        s(),
        prop::collection::vec(s(), 0..3),
        n(),
        n(),
    )
        .prop_map(
            |(provider, upstream, model, group, tags, input, output)| Deployment {
                key: String::new(),
                provider,
                upstream,
                model,
                group,
                tags,
                input_price_micro_usd: input,
                output_price_micro_usd: output,
            },
        )
}

type Health = (usize, i64, i64, i64, &'static str, i64);

fn health() -> impl Strategy<Value = Health> {
    let n = || prop::sample::select(LONGS);
    (
        0usize..3,
        n(),
        n(),
        n(),
        prop::sample::select(&["closed", "open", "half_open"][..]),
        n(),
    )
}

type Request = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i64,
    i64,
    &'static str,
    bool,
    &'static str,
);

fn request() -> impl Strategy<Value = Request> {
    let s = || prop::sample::select(STRS);
    let n = || prop::sample::select(LONGS);
    (
        s(),
        prop::sample::select(&["k1", "k2", "k3"][..]),
        s(),
        s(),
        n(),
        n(),
        s(),
        prop::bool::ANY,
        s(),
    )
}

proptest! {
    #![proptest_config(common::config(256))]

    #[test]
    fn compiled_decisions_equal_cedars(
        rules in prop::collection::vec(policy_text(), 0..6),
        deployments in prop::collection::vec(deployment(), 3),
        req in request(),
        health in prop::collection::vec(health(), 1..5),
    ) {
        let text = rules.concat();
        let mut policy = match RoutePolicy::new(&text, "gen.cedar") {
            Ok(policy) => policy,
            Err(e) => panic!("generated rules do not load: {e}\n{text}"),
        };
        prop_assert_eq!(policy.cedar_rules(), 0, "every generated rule is compiled");
        for (i, mut d) in deployments.into_iter().enumerate() {
            d.key = format!("d{i}");
            policy.deployment(d);
        }
        let (team, key, user, classification, sla_ms, budget_left_cents, model, stream, ingress) = req;
        let facts = RequestFacts { team, key, user, classification, sla_ms, budget_left_cents, model, stream, ingress };
        let candidates: Vec<Observed<'_>> = health
            .iter()
            .map(|&(deployment, latency_ms, ttft_ms, error_rate_pct, circuit, in_flight)| Observed {
                deployment, latency_ms, ttft_ms, error_rate_pct, circuit, in_flight,
            })
            .collect();
        let fast = policy.decide(&facts, &candidates).unwrap();
        let cedar = policy.decide_with_cedar(&facts, &candidates).unwrap();
        prop_assert_eq!(fast, cedar, "rules:\n{}", text);
    }
}
