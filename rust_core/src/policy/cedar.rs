//! The Cedar path: a decision made by Cedar's own authorizer, from entities and a context built
//! from the same facts (and the same attribute table) as the compiled evaluator. It decides the
//! rules the evaluator does not cover, and it is the reference the fast path is tested against.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression,
};

use super::eval::{Env, Val};
use super::facts::{Deployment, Observed, RequestFacts};
use super::schema::{Var, ACTION_TYPE, ATTRS, DEPLOYMENT_TYPE, KEY_TYPE, ROUTE};
use crate::error::RoutePolicyError;

/// What Cedar answered for one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// A forbid matched.
    pub forbidden: bool,
    /// The ids of the policies that decided (the matching forbids when forbidden, else the
    /// matching permits, the base permit included).
    pub ids: Vec<String>,
}

/// Cedar's authorizer and the names of the model's entities.
pub(crate) struct Cedar {
    authorizer: Authorizer,
    key_type: EntityTypeName,
    deployment_type: EntityTypeName,
    action: EntityUid,
}

fn facts_error(error: impl std::fmt::Display) -> RoutePolicyError {
    RoutePolicyError::Facts(error.to_string())
}

fn restricted(value: Val<'_>) -> RestrictedExpression {
    match value {
        Val::Bool(b) => RestrictedExpression::new_bool(b),
        Val::Long(n) => RestrictedExpression::new_long(n),
        Val::Str(s) => RestrictedExpression::new_string(s.to_owned()),
        Val::Tags(tags) => RestrictedExpression::new_set(
            tags.iter()
                .map(|t| RestrictedExpression::new_string(t.clone())),
        ),
        // the model's attributes are never constant sets or entities
        Val::Set(_) | Val::Entity(..) => RestrictedExpression::new_set([]),
    }
}

/// The attributes of `var` read from `env`, by name.
fn attrs(env: &Env<'_>, var: Var) -> Result<Vec<(String, RestrictedExpression)>, RoutePolicyError> {
    ATTRS
        .iter()
        .enumerate()
        .filter(|(_, a)| a.var == var)
        .map(|(slot, a)| {
            let value = env
                .attr(slot)
                .ok_or_else(|| facts_error(format!("no value for {}", a.name)))?;
            Ok((a.name.to_owned(), restricted(value)))
        })
        .collect()
}

impl Cedar {
    pub(crate) fn new() -> Result<Self, RoutePolicyError> {
        let name = |n: &str| EntityTypeName::from_str(n).map_err(facts_error);
        Ok(Self {
            authorizer: Authorizer::new(),
            key_type: name(KEY_TYPE)?,
            deployment_type: name(DEPLOYMENT_TYPE)?,
            action: EntityUid::from_type_name_and_id(name(ACTION_TYPE)?, EntityId::new(ROUTE)),
        })
    }

    fn key_uid(&self, req: &RequestFacts<'_>) -> EntityUid {
        EntityUid::from_type_name_and_id(self.key_type.clone(), EntityId::new(req.key))
    }

    /// The principal entity of a request.
    pub(crate) fn principal(&self, req: &RequestFacts<'_>) -> Result<Entity, RoutePolicyError> {
        let env = Env {
            req: Some(req),
            ..Env::default()
        };
        let attrs: HashMap<_, _> = attrs(&env, Var::Principal)?.into_iter().collect();
        Entity::new(self.key_uid(req), attrs, HashSet::new()).map_err(facts_error)
    }

    /// The context of a request.
    pub(crate) fn context(&self, req: &RequestFacts<'_>) -> Result<Context, RoutePolicyError> {
        let env = Env {
            req: Some(req),
            ..Env::default()
        };
        Context::from_pairs(attrs(&env, Var::Context)?).map_err(facts_error)
    }

    /// Asks Cedar about one candidate: `principal` and `context` from [`Cedar::principal`] and
    /// [`Cedar::context`] of `req`, `set` the policies to evaluate.
    pub(crate) fn authorize(
        &self,
        set: &PolicySet,
        req: &RequestFacts<'_>,
        principal: &Entity,
        context: &Context,
        dep: &Deployment,
        obs: &Observed<'_>,
    ) -> Result<Answer, RoutePolicyError> {
        let env = Env {
            req: Some(req),
            dep: Some(dep),
            obs: Some(obs),
        };
        let uid =
            EntityUid::from_type_name_and_id(self.deployment_type.clone(), EntityId::new(&dep.key));
        let attrs: HashMap<_, _> = attrs(&env, Var::Resource)?.into_iter().collect();
        let resource = Entity::new(uid.clone(), attrs, HashSet::new()).map_err(facts_error)?;
        let entities =
            Entities::from_entities([principal.clone(), resource], None).map_err(facts_error)?;
        let request = Request::new(
            self.key_uid(req),
            self.action.clone(),
            uid,
            context.clone(),
            None,
        )
        .map_err(facts_error)?;
        let response = self.authorizer.is_authorized(&request, set, &entities);
        Ok(Answer {
            forbidden: response.decision() == Decision::Deny,
            ids: response
                .diagnostics()
                .reason()
                .map(ToString::to_string)
                .collect(),
        })
    }
}
