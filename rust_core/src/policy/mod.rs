//! Routing rules: Cedar policies (the `cedar-policy` crate) that make a model group's deployments
//! eligible or not for a request, and score the eligible ones; used by the *route* phase.
//!
//! Rules are written over principal `Key`, action `Action::"route"` and resource `Deployment`
//! (the attributes are in [`schema`]). A deployment is eligible unless a `forbid` matches; every
//! matching `permit` with `@priority("N")` adds N to its score; the router re-orders the eligible
//! candidates by score, highest first, ties keeping its strategy's order. Every rule has an id:
//! `@id("...")`, else `policy<N>` (its position among all rules, from 0). A rule that errors when
//! evaluated (an overflow) does not match, as in Cedar.
//!
//! How a decision is made fast: [`RoutePolicy::new`] parses and validates with Cedar, then
//! compiles each policy ([`compile`]) into conjuncts by phase: the request's parts are evaluated
//! once per [`RoutePolicy::decide`], the deployment's fixed parts once at
//! [`RoutePolicy::deployment`], and only the rest per candidate, by a small evaluator with Cedar's
//! semantics ([`eval`]). A policy the evaluator does not cover is decided by Cedar's authorizer
//! ([`cedar`]); [`RoutePolicy::decide_with_cedar`] decides everything that way (the reference the
//! tests compare with).
//!
//! - [`schema`]: the attribute table and the Cedar schema made from it.
//! - [`facts`]: [`RequestFacts`], [`Deployment`], [`Observed`], [`Verdict`].
//! - [`load`]: parsing, ids, priorities, validation, error locations.
//! - `compile`, `eval`: the compiled evaluator; `cedar`: the authorizer path.

mod cedar;
mod check;
mod compile;
mod eval;
pub mod facts;
pub mod load;
pub mod schema;

use std::collections::HashMap;

use cedar_policy::{Policy, PolicyId, PolicySet, Schema};

pub use facts::{Deployment, Observed, RequestFacts, Verdict};

use crate::error::{RoutePolicyError, RuleProblem};
use cedar::{Answer, Cedar};
use check::Check;
use compile::Compiled;
use eval::Env;
use load::{Rule, BASE_ID};

/// A registered deployment: its attributes, and per rule whether its fixed parts hold.
struct Registered {
    deployment: Deployment,
    statics: Vec<bool>,
}

/// A compiled rule set and the deployments registered with it.
pub struct RoutePolicy {
    rules: Vec<Rule>,
    /// Per rule: its compiled form, `None` when Cedar decides it.
    compiled: Vec<Option<Compiled>>,
    /// The compiled rules that can match, forbids first, in source order.
    order: Vec<usize>,
    /// The rules Cedar decides, with the base permit (`None`: there are none).
    fallback: Option<PolicySet>,
    /// Every rule and the base permit (the reference path).
    everything: PolicySet,
    index: HashMap<String, usize>,
    deployments: Vec<Registered>,
    cedar: Cedar,
}

fn schema_error(message: impl std::fmt::Display) -> RoutePolicyError {
    RoutePolicyError::Rules {
        problems: vec![RuleProblem {
            origin: "routing schema".into(),
            line: 1,
            col: 1,
            message: message.to_string(),
        }],
    }
}

/// The routing schema (parsed from [`schema::schema_text`]).
pub fn routing_schema() -> Result<Schema, RoutePolicyError> {
    Schema::from_cedarschema_str(&schema::schema_text())
        .map(|(schema, _warnings)| schema)
        .map_err(schema_error)
}

/// A policy set of `policies` and the permit-everything base policy.
fn with_base<'a>(
    policies: impl Iterator<Item = &'a Policy>,
) -> Result<PolicySet, RoutePolicyError> {
    let base = Policy::parse(
        Some(PolicyId::new(BASE_ID)),
        "permit(principal, action, resource);",
    )
    .map_err(schema_error)?;
    PolicySet::from_policies(policies.cloned().chain([base])).map_err(schema_error)
}

impl RoutePolicy {
    /// Parses and validates the rules of one text; `origin` names it in errors.
    pub fn new(text: &str, origin: &str) -> Result<Self, RoutePolicyError> {
        Self::from_sources(&[(text, origin)])
    }

    /// Parses and validates the rules of several texts (`(text, origin)`, e.g. a rule file and the
    /// configuration's inline rules) as one set; ids are unique across them.
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<Self, RoutePolicyError> {
        let schema = routing_schema()?;
        let rules = load::load(sources, &schema)?;
        let compiled: Vec<Option<Compiled>> = rules
            .iter()
            .map(|r| {
                r.policy
                    .to_json()
                    .ok()
                    .and_then(|est| compile::compile(&est))
            })
            .collect();
        let live = |forbid: bool| {
            let compiled = &compiled;
            rules.iter().enumerate().filter(move |(i, r)| {
                r.forbid == forbid && compiled[*i].as_ref().is_some_and(|c| !c.never)
            })
        };
        let order = live(true).chain(live(false)).map(|(i, _)| i).collect();
        let uncompiled: Vec<&Policy> = rules
            .iter()
            .zip(&compiled)
            .filter(|(_, c)| c.is_none())
            .map(|(r, _)| &r.policy)
            .collect();
        let fallback = match uncompiled.is_empty() {
            true => None,
            false => Some(with_base(uncompiled.into_iter())?),
        };
        let everything = with_base(rules.iter().map(|r| &r.policy))?;
        let index = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        Ok(Self {
            rules,
            compiled,
            order,
            fallback,
            everything,
            index,
            deployments: Vec::new(),
            cedar: Cedar::new()?,
        })
    }

    /// The rules' ids, in source order.
    pub fn ids(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.id.as_str()).collect()
    }

    /// The number of rules Cedar's authorizer decides (the rest are compiled).
    pub fn cedar_rules(&self) -> usize {
        self.compiled.iter().filter(|c| c.is_none()).count()
    }

    /// Registers a deployment's fixed attributes; returns its id for [`Observed::deployment`].
    pub fn deployment(&mut self, deployment: Deployment) -> usize {
        let env = Env {
            dep: Some(&deployment),
            ..Env::default()
        };
        let statics = self
            .compiled
            .iter()
            .map(|c| {
                c.as_ref()
                    .is_some_and(|c| c.statics.iter().all(|e| e.holds(&env)))
            })
            .collect();
        self.deployments.push(Registered {
            deployment,
            statics,
        });
        self.deployments.len() - 1
    }

    fn registered(&self, id: usize) -> Result<&Registered, RoutePolicyError> {
        self.deployments
            .get(id)
            .ok_or(RoutePolicyError::UnknownDeployment(id))
    }

    /// The verdict of a Cedar answer.
    fn verdict(&self, deployment: usize, answer: Answer) -> Verdict {
        let mut rules: Vec<usize> = answer
            .ids
            .iter()
            .filter_map(|id| self.index.get(id).copied())
            .collect();
        rules.sort_unstable();
        let score = match answer.forbidden {
            true => 0,
            false => rules.iter().map(|&i| self.rules[i].priority).sum(),
        };
        Verdict {
            deployment,
            eligible: !answer.forbidden,
            score,
            rules,
        }
    }

    /// What the rules say of each candidate, in the candidates' order.
    ///
    /// The request's parts of every rule are evaluated once; for each candidate, the forbids
    /// that can still match, then (when none did) the permits.
    pub fn decide(
        &self,
        req: &RequestFacts<'_>,
        candidates: &[Observed<'_>],
    ) -> Result<Vec<Verdict>, RoutePolicyError> {
        self.judge(req, candidates, true)
    }

    /// The positions in `candidates` of the eligible ones, highest score first, ties in the given
    /// order: [`RoutePolicy::decide`] reduced to what the router needs (the deciding rules are
    /// not collected).
    pub fn order(
        &self,
        req: &RequestFacts<'_>,
        candidates: &[Observed<'_>],
    ) -> Result<Vec<usize>, RoutePolicyError> {
        let mut verdicts: Vec<(usize, Verdict)> = self
            .judge(req, candidates, false)?
            .into_iter()
            .enumerate()
            .filter(|(_, v)| v.eligible)
            .collect();
        verdicts.sort_by_key(|(_, v)| std::cmp::Reverse(v.score)); // stable
        Ok(verdicts.into_iter().map(|(at, _)| at).collect())
    }

    /// [`RoutePolicy::decide`]; `with_rules`: the verdicts name the rules that decided.
    fn judge(
        &self,
        req: &RequestFacts<'_>,
        candidates: &[Observed<'_>],
        with_rules: bool,
    ) -> Result<Vec<Verdict>, RoutePolicyError> {
        let request = Env {
            req: Some(req),
            ..Env::default()
        };
        // the rules whose request part holds, with what the candidates' loop reads of each
        let mut live: Vec<(usize, bool, i64, &[Check])> = Vec::with_capacity(self.order.len());
        live.extend(self.order.iter().filter_map(|&i| {
            let c = self.compiled[i].as_ref()?;
            let rule = &self.rules[i];
            c.request.iter().all(|e| e.holds(&request)).then_some((
                i,
                rule.forbid,
                rule.priority,
                c.observed.as_slice(),
            ))
        }));
        let mut matched = Vec::with_capacity(live.len());
        let cedar_facts = match self.fallback {
            Some(_) => Some((self.cedar.principal(req)?, self.cedar.context(req)?)),
            None => None,
        };
        let mut verdicts = Vec::with_capacity(candidates.len());
        for obs in candidates {
            let registered = self.registered(obs.deployment)?;
            let env = Env {
                req: Some(req),
                dep: Some(&registered.deployment),
                obs: Some(obs),
            };
            let (mut eligible, mut score) = (true, 0);
            matched.clear();
            for &(i, forbid, priority, observed) in &live {
                if !forbid && !eligible {
                    break; // the permits come after the forbids: they cannot change this verdict
                }
                if registered.statics[i] && observed.iter().all(|e| e.holds(&env)) {
                    eligible &= !forbid;
                    score += priority; // 0 for a forbid
                    if with_rules {
                        matched.push(i);
                    }
                }
            }
            let mut verdict = Verdict {
                deployment: obs.deployment,
                eligible,
                score,
                rules: if with_rules {
                    matched.clone()
                } else {
                    Vec::new()
                },
            };
            if let (Some(set), Some((principal, context))) = (&self.fallback, &cedar_facts) {
                let answer = self.cedar.authorize(
                    set,
                    req,
                    principal,
                    context,
                    &registered.deployment,
                    obs,
                )?;
                verdict = self.merge(verdict, self.verdict(obs.deployment, answer));
            }
            verdicts.push(verdict);
        }
        Ok(verdicts)
    }

    /// The verdict of the compiled rules and of Cedar's, together.
    fn merge(&self, compiled: Verdict, cedar: Verdict) -> Verdict {
        let (mut a, b) = match (compiled.eligible, cedar.eligible) {
            (true, false) => return cedar,
            (false, true) => return compiled,
            _ => (compiled, cedar),
        };
        a.score += b.score;
        a.rules.extend(b.rules);
        a.rules.sort_unstable();
        a
    }

    /// [`RoutePolicy::decide`] with every rule evaluated by Cedar's authorizer, one request per
    /// candidate: the same answer, slower (the reference the compiled path is tested against).
    pub fn decide_with_cedar(
        &self,
        req: &RequestFacts<'_>,
        candidates: &[Observed<'_>],
    ) -> Result<Vec<Verdict>, RoutePolicyError> {
        let principal = self.cedar.principal(req)?;
        let context = self.cedar.context(req)?;
        candidates
            .iter()
            .map(|obs| {
                let registered = self.registered(obs.deployment)?;
                let answer = self.cedar.authorize(
                    &self.everything,
                    req,
                    &principal,
                    &context,
                    &registered.deployment,
                    obs,
                )?;
                Ok(self.verdict(obs.deployment, answer))
            })
            .collect()
    }
}
