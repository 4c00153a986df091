//! Compiling a Cedar policy (its JSON form, Cedar's documented EST) into conjuncts of
//! [`Expr`]s sorted by [`Phase`]: the policy matches exactly when every conjunct evaluates to
//! `true` (the scope constraints, each `when` body split at its top-level `&&`, each `unless`
//! body negated and split at its top-level `||`). Splitting is exact: a conjunction is satisfied
//! iff each part evaluates to `true`, whatever order they are evaluated in, since evaluation has
//! no effects and an error or a `false` both leave the policy unsatisfied.
//!
//! A policy using something [`Expr`] does not cover compiles to `None` and is left to Cedar.

use serde_json::{Map, Value};

use super::check::Check;
use super::eval::{Env, Expr, Lit, Op, PatElem};
use super::schema::{self, Phase, Var, ATTRS};

/// A policy's conjuncts by when they can be evaluated.
#[derive(Debug, Clone, Default)]
pub(crate) struct Compiled {
    /// Read only the request: evaluated once per decision.
    pub request: Vec<Check>,
    /// Read only the deployment's fixed attributes: evaluated once, at registration.
    pub statics: Vec<Check>,
    /// Read the candidate's health (or the request and the deployment together).
    pub observed: Vec<Check>,
    /// A constant part is false: the policy never matches.
    pub never: bool,
}

/// The phase of an expression: the latest phase of what it reads (constants: `None`).
fn phase(expr: &Expr) -> Option<Phase> {
    // the request and the deployment together: only a candidate has both
    let join = |a: Option<Phase>, b: Option<Phase>| match (a, b) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) if x == y => Some(x),
        _ => Some(Phase::Observed),
    };
    match expr {
        Expr::Lit(_) | Expr::Action => None,
        Expr::Attr(slot) => ATTRS.get(*slot).map(|a| a.phase()),
        Expr::Principal => Some(Phase::Request),
        Expr::Resource => Some(Phase::Static),
        Expr::Not(e) | Expr::Neg(e) | Expr::IsEmpty(e) | Expr::Like(e, _) => phase(e),
        Expr::Is(e, _, w) => join(phase(e), w.as_deref().and_then(phase)),
        Expr::Bin(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => join(phase(a), phase(b)),
        Expr::If(c, t, e) => join(join(phase(c), phase(t)), phase(e)),
    }
}

fn one(value: &Value) -> Option<(&str, &Value)> {
    let object = value.as_object()?;
    (object.len() == 1)
        .then(|| object.iter().next())
        .flatten()
        .map(|(k, v)| (k.as_str(), v))
}

fn entity(value: &Value) -> Option<Lit> {
    let object = value.as_object()?;
    let object = object
        .get("__entity")
        .and_then(Value::as_object)
        .unwrap_or(object);
    Some(Lit::Entity(
        object.get("type")?.as_str()?.to_owned(),
        object.get("id")?.as_str()?.to_owned(),
    ))
}

fn literal(value: &Value) -> Option<Lit> {
    Some(match value {
        Value::Bool(b) => Lit::Bool(*b),
        Value::Number(n) => Lit::Long(n.as_i64()?),
        Value::String(s) => Lit::Str(s.clone()),
        Value::Array(items) => Lit::Set(items.iter().map(literal).collect::<Option<_>>()?),
        Value::Object(_) => entity(value)?,
        Value::Null => return None,
    })
}

fn var(name: &str) -> Option<Var> {
    match name {
        "principal" => Some(Var::Principal),
        "context" => Some(Var::Context),
        "resource" => Some(Var::Resource),
        _ => None,
    }
}

fn pair(args: &Value) -> Option<(Box<Expr>, Box<Expr>)> {
    Some((
        Box::new(expr(args.get("left")?)?),
        Box::new(expr(args.get("right")?)?),
    ))
}

fn binary(op: &str) -> Option<Op> {
    Some(match op {
        "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "+" => Op::Add,
        "-" => Op::Sub,
        "*" => Op::Mul,
        "in" => Op::In,
        "contains" => Op::Contains,
        "containsAll" => Op::ContainsAll,
        "containsAny" => Op::ContainsAny,
        _ => return None,
    })
}

fn pattern(elems: &Value) -> Option<Vec<PatElem>> {
    let mut out = Vec::new();
    for elem in elems.as_array()? {
        match elem {
            Value::String(s) if s == "Wildcard" => out.push(PatElem::Wildcard),
            _ => out.extend(elem.get("Literal")?.as_str()?.chars().map(PatElem::Char)),
        }
    }
    Some(out)
}

/// One EST expression (`None`: not covered by [`Expr`]).
fn expr(value: &Value) -> Option<Expr> {
    let (key, args) = one(value)?;
    let arg = || Some(Box::new(expr(args.get("arg")?)?));
    Some(match key {
        "Value" => Expr::Lit(literal(args)?),
        "Var" => match args.as_str()? {
            "principal" => Expr::Principal,
            "resource" => Expr::Resource,
            "action" => Expr::Action,
            _ => return None,
        },
        "!" => Expr::Not(arg()?),
        "neg" => Expr::Neg(arg()?),
        "isEmpty" => Expr::IsEmpty(arg()?),
        "&&" => pair(args).map(|(a, b)| Expr::And(a, b))?,
        "||" => pair(args).map(|(a, b)| Expr::Or(a, b))?,
        "." => {
            let (_, name) = one(args.get("left")?).filter(|(k, _)| *k == "Var")?;
            let v = var(name.as_str()?)?;
            Expr::Attr(schema::slot(v, args.get("attr")?.as_str()?)?)
        }
        "has" => {
            let (_, name) = one(args.get("left")?).filter(|(k, _)| *k == "Var")?;
            let v = var(name.as_str()?)?;
            Expr::Lit(Lit::Bool(
                schema::slot(v, args.get("attr")?.as_str()?).is_some(),
            ))
        }
        "like" => Expr::Like(
            Box::new(expr(args.get("left")?)?),
            pattern(args.get("pattern")?)?,
        ),
        "is" => Expr::Is(
            Box::new(expr(args.get("left")?)?),
            args.get("entity_type")?.as_str()?.to_owned(),
            match args.get("in") {
                Some(w) => Some(Box::new(expr(w)?)),
                None => None,
            },
        ),
        "if-then-else" => Expr::If(
            Box::new(expr(args.get("if")?)?),
            Box::new(expr(args.get("then")?)?),
            Box::new(expr(args.get("else")?)?),
        ),
        "Set" => {
            let items = args.as_array()?.iter().map(|e| match expr(e)? {
                Expr::Lit(lit) => Some(lit),
                _ => None,
            });
            Expr::Lit(Lit::Set(items.collect::<Option<_>>()?))
        }
        _ => {
            let op = binary(key)?;
            let (a, b) = pair(args)?;
            Expr::Bin(op, a, b)
        }
    })
}

/// The conjuncts of a scope constraint on `var` (`principal`, `action`, `resource`).
fn scope(constraint: &Map<String, Value>, var: Expr, out: &mut Vec<Expr>) -> Option<()> {
    let subject = || Box::new(var.clone());
    match constraint.get("op")?.as_str()? {
        "All" => {}
        "==" => out.push(Expr::Bin(
            Op::Eq,
            subject(),
            Box::new(Expr::Lit(entity(constraint.get("entity")?)?)),
        )),
        "in" => {
            let target = match (constraint.get("entity"), constraint.get("entities")) {
                (Some(e), _) => entity(e)?,
                (None, Some(list)) => {
                    Lit::Set(list.as_array()?.iter().map(entity).collect::<Option<_>>()?)
                }
                (None, None) => return None,
            };
            out.push(Expr::Bin(Op::In, subject(), Box::new(Expr::Lit(target))));
        }
        "is" => {
            let within = match constraint.get("in") {
                Some(w) => Some(Box::new(Expr::Lit(entity(w.get("entity")?)?))),
                None => None,
            };
            out.push(Expr::Is(
                subject(),
                constraint.get("entity_type")?.as_str()?.to_owned(),
                within,
            ));
        }
        _ => return None,
    }
    Some(())
}

/// Splits `e` at its top-level `&&`s.
fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::And(a, b) => {
            conjuncts(*a, out);
            conjuncts(*b, out);
        }
        e => out.push(e),
    }
}

/// Splits `!e` at `e`'s top-level `||`s (`!(a || b)` holds iff `!a` and `!b` do).
fn negated(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::Or(a, b) => {
            negated(*a, out);
            negated(*b, out);
        }
        e => out.push(Expr::Not(Box::new(e))),
    }
}

/// Compiles a policy from its EST JSON (`cedar_policy::Policy::to_json`).
pub(crate) fn compile(est: &Value) -> Option<Compiled> {
    let mut parts = Vec::new();
    scope(
        est.get("principal")?.as_object()?,
        Expr::Principal,
        &mut parts,
    )?;
    scope(est.get("action")?.as_object()?, Expr::Action, &mut parts)?;
    scope(
        est.get("resource")?.as_object()?,
        Expr::Resource,
        &mut parts,
    )?;
    for condition in est.get("conditions")?.as_array()? {
        let body = expr(condition.get("body")?)?;
        match condition.get("kind")?.as_str()? {
            "when" => conjuncts(body, &mut parts),
            "unless" => negated(body, &mut parts),
            _ => return None,
        }
    }
    let mut compiled = Compiled::default();
    for part in parts {
        match phase(&part) {
            None => compiled.never |= !part.holds(&Env::default()),
            Some(Phase::Request) => compiled.request.push(Check::of(part)),
            Some(Phase::Static) => compiled.statics.push(Check::of(part)),
            Some(Phase::Observed) => compiled.observed.push(Check::of(part)),
        }
    }
    Some(compiled)
}
