//! Routing rules (`_core::policy`): the issue's two examples, forbids on circuit state and
//! classification, priorities summing, rule ids, errors located at their line and column
//! (parse, validation against the routing schema, annotations), the empty rule set, and the
//! fixture's 20 rules decided the same by the compiled path and by Cedar's authorizer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use _core::error::RoutePolicyError;
use _core::policy::{Deployment, Observed, RequestFacts, RoutePolicy, Verdict};

#[path = "../benches/support/policy_fixture.rs"]
mod policy_fixture;

use policy_fixture::deployment;

/// `rules` over two deployments: 0 a cloud one (tags `eu`), 1 a self-hosted one.
fn two(rules: &str) -> RoutePolicy {
    let mut policy = RoutePolicy::new(rules, "rules.cedar").unwrap();
    assert_eq!(
        policy.deployment(deployment(
            "openai",
            "openai",
            "fast",
            &["eu"],
            2_500_000,
            10_000_000
        )),
        0
    );
    assert_eq!(
        policy.deployment(deployment("vllm", "vllm", "fast", &["self-hosted"], 0, 0)),
        1
    );
    policy
}

fn request() -> RequestFacts<'static> {
    RequestFacts {
        team: "t1",
        key: "k1",
        model: "fast",
        budget_left_cents: -1,
        ingress: "openai",
        ..Default::default()
    }
}

fn candidates() -> Vec<Observed<'static>> {
    vec![Observed::new(0), Observed::new(1)]
}

/// Both ways (compiled and Cedar's authorizer), checked equal.
fn decide(policy: &RoutePolicy, req: &RequestFacts<'_>, cands: &[Observed<'_>]) -> Vec<Verdict> {
    let fast = policy.decide(req, cands).unwrap();
    assert_eq!(
        fast,
        policy.decide_with_cedar(req, cands).unwrap(),
        "compiled and Cedar disagree"
    );
    fast
}

/// (eligible, score, ids of the deciding rules) per candidate.
fn summary(policy: &RoutePolicy, verdicts: &[Verdict]) -> Vec<(bool, i64, Vec<String>)> {
    let ids = policy.ids();
    verdicts
        .iter()
        .map(|v| {
            (
                v.eligible,
                v.score,
                v.rules.iter().map(|&i| ids[i].to_owned()).collect(),
            )
        })
        .collect()
}

fn error(text: &str) -> String {
    match RoutePolicy::new(text, "rules.cedar") {
        Err(e @ RoutePolicyError::Rules { .. }) => e.to_string(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("rules accepted: {text}"),
    }
}

const BUDGET: &str = r#"
@id("budget-prefers-self-hosted")
@priority("100")
permit(principal, action, resource)
when { context.budget_left_cents >= 0 && context.budget_left_cents < 1000 }
when { resource.tags.contains("self-hosted") };
"#;

#[test]
fn under_10_usd_left_self_hosted_is_preferred() {
    let policy = two(BUDGET);
    for (cents, expected) in [
        (500, 100),
        (999, 100),
        (0, 100),
        (1000, 0),
        (50_000, 0),
        (-1, 0),
    ] {
        let req = RequestFacts {
            budget_left_cents: cents,
            ..request()
        };
        let verdicts = decide(&policy, &req, &candidates());
        assert_eq!(
            verdicts[0].score, 0,
            "the cloud deployment gets nothing at {cents}"
        );
        assert_eq!(verdicts[1].score, expected, "budget {cents}");
        assert!(verdicts.iter().all(|v| v.eligible));
    }
    let req = RequestFacts {
        budget_left_cents: 500,
        ..request()
    };
    let got = summary(&policy, &decide(&policy, &req, &candidates()));
    assert_eq!(
        got[1],
        (true, 100, vec!["budget-prefers-self-hosted".to_owned()])
    );
    assert_eq!(got[0], (true, 0, vec![]));
}

#[test]
fn deployments_slower_than_the_sla_are_forbidden() {
    let policy = two(r#"@id("sla") forbid(principal, action, resource)
           when { context.sla_ms > 0 && resource.latency_ms > context.sla_ms };"#);
    let cands = [
        Observed {
            latency_ms: 2_500,
            ..Observed::new(0)
        },
        Observed {
            latency_ms: 800,
            ..Observed::new(1)
        },
    ];
    let req = RequestFacts {
        sla_ms: 1_000,
        ..request()
    };
    let got = summary(&policy, &decide(&policy, &req, &cands));
    assert_eq!(
        got,
        vec![(false, 0, vec!["sla".to_owned()]), (true, 0, vec![])]
    );
    // no SLA: both eligible; exactly at the SLA: eligible
    let no_sla = decide(&policy, &request(), &cands);
    assert!(no_sla.iter().all(|v| v.eligible));
    let at = [Observed {
        latency_ms: 1_000,
        ..Observed::new(0)
    }];
    assert!(decide(&policy, &req, &at)[0].eligible);
}

#[test]
fn open_circuits_and_classifications_forbid() {
    let policy = two(r#"
        @id("open") forbid(principal, action, resource) when { resource.circuit == "open" };
        @id("confidential-in-eu") forbid(principal, action, resource)
        when { context.classification == "confidential" } unless { resource.tags.contains("eu") };
        "#);
    let cands = [
        Observed {
            circuit: "open",
            ..Observed::new(0)
        },
        Observed {
            circuit: "half_open",
            ..Observed::new(1)
        },
    ];
    let got = summary(&policy, &decide(&policy, &request(), &cands));
    assert_eq!(
        got,
        vec![(false, 0, vec!["open".to_owned()]), (true, 0, vec![])]
    );
    let req = RequestFacts {
        classification: "confidential",
        ..request()
    };
    let got = summary(&policy, &decide(&policy, &req, &cands));
    assert_eq!(
        got,
        vec![
            (false, 0, vec!["open".to_owned()]),
            (false, 0, vec!["confidential-in-eu".to_owned()])
        ]
    );
    let both = [Observed {
        circuit: "open",
        ..Observed::new(1)
    }];
    let got = summary(&policy, &decide(&policy, &req, &both));
    assert_eq!(
        got[0],
        (
            false,
            0,
            vec!["open".to_owned(), "confidential-in-eu".to_owned()]
        )
    );
}

#[test]
fn priorities_sum_and_every_matching_rule_is_named() {
    let policy = two(r#"
        @priority("10") permit(principal, action, resource) when { resource.input_price_micro_usd < 1000000 };
        @id("idle") @priority("3") permit(principal, action, resource) when { resource.in_flight < 10 };
        @priority("-4") permit(principal, action, resource) when { resource.provider == "openai" };
        permit(principal, action, resource) when { principal.team == "t1" };
        "#);
    assert_eq!(policy.ids(), vec!["policy0", "idle", "policy2", "policy3"]);
    let cands = [
        Observed {
            in_flight: 2,
            ..Observed::new(0)
        },
        Observed {
            in_flight: 50,
            ..Observed::new(1)
        },
    ];
    let got = summary(&policy, &decide(&policy, &request(), &cands));
    let names = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(got[0], (true, -1, names(&["idle", "policy2", "policy3"])));
    assert_eq!(got[1], (true, 10, names(&["policy0", "policy3"])));
}

#[test]
fn principal_scope_and_the_fixture_rules() {
    let policy = policy_fixture::policy();
    assert_eq!(policy.ids().len(), 20);
    assert_eq!(policy.cedar_rules(), 0, "every fixture rule is compiled");
    let req = policy_fixture::request();
    let got = summary(
        &policy,
        &decide(&policy, &req, &policy_fixture::candidates()),
    );
    // bedrock-1's circuit is open, gemini-1 fails 60% of its attempts, azure-1 is deprecated,
    // anthropic-1 is slower than the 2 s SLA
    let eligible: Vec<bool> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        eligible,
        [true, true, false, false, true, true, false, false, true, true]
    );
    assert_eq!(got[3].2, vec!["circuit-open".to_owned()]);
    assert_eq!(got[6].2, vec!["deprecated".to_owned()]);
    assert_eq!(got[7].2, vec!["error-rate".to_owned()]);
    // vllm-local: budget (100) + cheap (10) + fast first token (5) + idle (3) + a100 for platform
    // (20) + fast group (7) + local vllm (2) + healthy (1) + latency (8)
    assert_eq!(got[4].1, 156);
    let blocked = RequestFacts {
        key: "k-blocked",
        ..req
    };
    let verdicts = decide(&policy, &blocked, &policy_fixture::candidates());
    assert!(verdicts.iter().all(|v| !v.eligible));
}

#[test]
fn empty_rules_leave_everything_eligible() {
    for text in ["", "  // nothing yet\n"] {
        let policy = two(text);
        assert!(policy.ids().is_empty());
        let verdicts = decide(&policy, &request(), &candidates());
        assert_eq!(
            verdicts,
            vec![
                Verdict {
                    deployment: 0,
                    eligible: true,
                    score: 0,
                    rules: vec![]
                },
                Verdict {
                    deployment: 1,
                    eligible: true,
                    score: 0,
                    rules: vec![]
                }
            ]
        );
    }
}

#[test]
fn a_bad_rule_names_its_line_and_column() {
    let text = "permit(principal, action, resource);\n\nforbid(principal, action, resource)\n  when { resource.latency_ms > };\n";
    let message = error(text);
    assert!(
        message.starts_with("rules.cedar:4:32: unexpected token `}`"),
        "{message}"
    );
}

#[test]
fn an_unknown_attribute_is_rejected_by_validation() {
    let text = "// fast ones\n@id(\"slow\")\nforbid(principal, action, resource)\n  when { resource.latnecy_ms > 500 };";
    let message = error(text);
    assert!(message.starts_with("rules.cedar:4:10: "), "{message}");
    assert!(
        message.contains("attribute `latnecy_ms` on entity type `Deployment` not found"),
        "{message}"
    );
    assert!(message.contains("did you mean `latency_ms`?"), "{message}");
    // a type error and an unknown action too
    let message = error("permit(principal, action, resource) when { context.sla_ms > \"fast\" };");
    assert!(message.starts_with("rules.cedar:1:"), "{message}");
    assert!(
        message.contains("expected Long but saw String"),
        "{message}"
    );
    let message = error("permit(principal, action == Action::\"chat\", resource);");
    assert!(
        message.contains("unrecognized action `Action::\"chat\"`"),
        "{message}"
    );
}

#[test]
fn bad_annotations_are_located() {
    let message = error("permit(principal, action, resource);\n@priority(\"high\")\npermit(principal, action, resource);");
    assert_eq!(
        message,
        "rules.cedar:2:1: @priority must be an integer, got \"high\""
    );
    let message = error("@priority(\"5\") forbid(principal, action, resource);");
    assert!(
        message.starts_with("rules.cedar:1:1: @priority has no effect on a forbid"),
        "{message}"
    );
    let message = error("@id(\"a\") permit(principal, action, resource);\n@id(\"a\") forbid(principal, action, resource);");
    assert_eq!(
        message,
        "rules.cedar:2:1: rule id \"a\" is given twice (first at rules.cedar:1)"
    );
    let message = error("permit(principal == ?principal, action, resource);");
    assert!(message.contains("templates"), "{message}");
}

#[test]
fn several_sources_share_ids_and_report_their_own_lines() {
    let file =
        "@id(\"a\") permit(principal, action, resource);\npermit(principal, action, resource);";
    let inline = "forbid(principal, action, resource) when { resource.circuit == \"open\" };";
    let policy =
        RoutePolicy::from_sources(&[(file, "rules.cedar"), (inline, "routing.rules")]).unwrap();
    assert_eq!(policy.ids(), vec!["a", "policy1", "policy2"]);
    let bad = "\n\npermit(principal, action, resource) when { resource.nope };";
    let err = RoutePolicy::from_sources(&[(file, "rules.cedar"), (bad, "routing.rules")])
        .err()
        .unwrap();
    assert!(err.to_string().starts_with("routing.rules:3:"), "{err}");
    let dup = "@id(\"a\") forbid(principal, action, resource);";
    let err = RoutePolicy::from_sources(&[(file, "rules.cedar"), (dup, "routing.rules")])
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "routing.rules:1:1: rule id \"a\" is given twice (first at rules.cedar:1)"
    );
}

#[test]
fn a_rule_outside_the_compiled_subset_is_decided_by_cedar() {
    let policy = two(
        r#"@id("rec") @priority("7") permit(principal, action, resource)
           when { {"limit": 100}.limit > resource.in_flight };
           @id("open") forbid(principal, action, resource) when { resource.circuit == "open" };"#,
    );
    assert_eq!(policy.cedar_rules(), 1);
    let cands = [
        Observed {
            in_flight: 5,
            ..Observed::new(0)
        },
        Observed {
            in_flight: 500,
            ..Observed::new(1)
        },
    ];
    let got = summary(&policy, &decide(&policy, &request(), &cands));
    assert_eq!(
        got,
        vec![(true, 7, vec!["rec".to_owned()]), (true, 0, vec![])]
    );
    let open = [Observed {
        in_flight: 5,
        circuit: "open",
        ..Observed::new(0)
    }];
    assert_eq!(
        summary(&policy, &decide(&policy, &request(), &open))[0],
        (false, 0, vec!["open".to_owned()])
    );
}

#[test]
fn an_overflow_makes_the_rule_not_match() {
    let policy = two(
        r#"forbid(principal, action, resource) when { resource.latency_ms * 1000000000000 > 5 };"#,
    );
    let cands = [
        Observed {
            latency_ms: 1,
            ..Observed::new(0)
        },
        Observed {
            latency_ms: 1 << 40,
            ..Observed::new(1)
        },
    ];
    let verdicts = decide(&policy, &request(), &cands);
    assert!(!verdicts[0].eligible);
    assert!(
        verdicts[1].eligible,
        "the overflow errors: the forbid does not apply"
    );
}

#[test]
fn an_unknown_deployment_id_is_an_error() {
    let policy = two("");
    let err = policy
        .decide(&request(), &[Observed::new(7)])
        .err()
        .unwrap();
    assert_eq!(err, RoutePolicyError::UnknownDeployment(7));
    let _unused: Deployment = Deployment::default();
}
