//! The compiled evaluator: Cedar expressions of the routing model as a small tree over attribute
//! slots, evaluated with Cedar's runtime semantics (an error, such as an overflow or a type
//! mismatch, is `None` and makes the rule not match, as Cedar skips a policy that errors).
//!
//! It covers what routing rules use: literals, the three entities, attribute reads, `has`,
//! `== != < <= > >= + - *`, `&& || !`, `if`, `in`, `is`, `like`, and the set methods
//! `contains`, `containsAll`, `containsAny`, `isEmpty`. A rule with anything else (a record, an
//! extension function, tags) is evaluated by Cedar itself (see `cedar.rs`).

use super::facts::{Deployment, Observed, RequestFacts};
use super::schema::{ACTION_TYPE, DEPLOYMENT_TYPE, KEY_TYPE, ROUTE};

/// A constant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lit {
    Bool(bool),
    Long(i64),
    Str(String),
    /// (type, id)
    Entity(String, String),
    Set(Vec<Lit>),
}

/// One element of a `like` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatElem {
    Char(char),
    Wildcard,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    In,
    Contains,
    ContainsAll,
    ContainsAny,
}

/// A compiled expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Lit(Lit),
    /// An attribute, by slot in [`super::schema::ATTRS`].
    Attr(usize),
    Principal,
    Resource,
    Action,
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    IsEmpty(Box<Expr>),
    Like(Box<Expr>, Vec<PatElem>),
    Is(Box<Expr>, String, Option<Box<Expr>>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
}

/// A value during evaluation (borrowing from the facts and the expression).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    Bool(bool),
    Long(i64),
    Str(&'a str),
    /// A set of strings held by the facts (a deployment's tags).
    Tags(&'a [String]),
    /// A constant set.
    Set(&'a [Lit]),
    /// (type, id)
    Entity(&'a str, &'a str),
}

/// What an expression is evaluated against; a part absent is an error if read (the phases of
/// [`super::schema::Phase`] guarantee it is not).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Env<'a> {
    pub req: Option<&'a RequestFacts<'a>>,
    pub dep: Option<&'a Deployment>,
    pub obs: Option<&'a Observed<'a>>,
}

impl<'a> Env<'a> {
    /// The value of attribute `slot` (the order of [`super::schema::ATTRS`]).
    pub(crate) fn attr(&self, slot: usize) -> Option<Val<'a>> {
        let req = || self.req;
        let dep = || self.dep;
        let obs = || self.obs;
        Some(match slot {
            0 => Val::Str(req()?.team),
            1 => Val::Str(req()?.key),
            2 => Val::Str(req()?.user),
            3 => Val::Str(req()?.classification),
            4 => Val::Long(req()?.sla_ms),
            5 => Val::Long(req()?.budget_left_cents),
            6 => Val::Str(req()?.model),
            7 => Val::Bool(req()?.stream),
            8 => Val::Str(req()?.ingress),
            9 => Val::Str(&dep()?.provider),
            10 => Val::Str(&dep()?.upstream),
            11 => Val::Str(&dep()?.model),
            12 => Val::Str(&dep()?.group),
            13 => Val::Tags(&dep()?.tags),
            14 => Val::Long(dep()?.input_price_micro_usd),
            15 => Val::Long(dep()?.output_price_micro_usd),
            16 => Val::Long(obs()?.latency_ms),
            17 => Val::Long(obs()?.ttft_ms),
            18 => Val::Long(obs()?.error_rate_pct),
            19 => Val::Str(obs()?.circuit),
            20 => Val::Long(obs()?.in_flight),
            _ => return None,
        })
    }
}

impl Lit {
    fn val(&self) -> Val<'_> {
        match self {
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Long(n) => Val::Long(*n),
            Lit::Str(s) => Val::Str(s),
            Lit::Entity(t, id) => Val::Entity(t, id),
            Lit::Set(items) => Val::Set(items),
        }
    }
}

/// The elements of a set value (`None`: not a set).
#[derive(Clone, Copy)]
enum Elems<'a> {
    Tags(&'a [String]),
    Lits(&'a [Lit]),
}

impl<'a> Elems<'a> {
    fn of(v: Val<'a>) -> Option<Self> {
        match v {
            Val::Tags(t) => Some(Elems::Tags(t)),
            Val::Set(s) => Some(Elems::Lits(s)),
            _ => None,
        }
    }

    fn iter(self) -> impl Iterator<Item = Val<'a>> {
        let (tags, lits) = match self {
            Elems::Tags(t) => (t, &[][..]),
            Elems::Lits(l) => (&[][..], l),
        };
        tags.iter()
            .map(|s| Val::Str(s))
            .chain(lits.iter().map(Lit::val))
    }

    fn contains(self, x: Val<'_>) -> bool {
        self.iter().any(|e| equal(e, x))
    }

    fn subset_of(self, other: Elems<'_>) -> bool {
        self.iter().all(|e| other.contains(e))
    }
}

/// Cedar's `==`: values of different types are unequal; sets compare as sets.
fn equal(a: Val<'_>, b: Val<'_>) -> bool {
    match (a, b) {
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Long(x), Val::Long(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Entity(t, i), Val::Entity(u, j)) => t == u && i == j,
        _ => match (Elems::of(a), Elems::of(b)) {
            (Some(x), Some(y)) => x.subset_of(y) && y.subset_of(x),
            _ => false,
        },
    }
}

/// Cedar's `like`: `*` matches any run of characters, everything else itself.
fn like(text: &str, pattern: &[PatElem]) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let (mut t, mut p) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while t < chars.len() {
        match pattern.get(p) {
            Some(PatElem::Wildcard) => {
                back = Some((p, t));
                p += 1;
            }
            Some(PatElem::Char(c)) if *c == chars[t] => {
                p += 1;
                t += 1;
            }
            _ => match back {
                Some((bp, bt)) => {
                    back = Some((bp, bt + 1));
                    p = bp + 1;
                    t = bt + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|e| *e == PatElem::Wildcard)
}

fn long(v: Val<'_>) -> Option<i64> {
    match v {
        Val::Long(n) => Some(n),
        _ => None,
    }
}

fn boolean(v: Val<'_>) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(b),
        _ => None,
    }
}

/// Cedar's `in` without an entity hierarchy (no entity of the model has parents): equality with
/// the entity, or with one of the set's (every element must be an entity).
fn within(left: Val<'_>, right: Val<'_>) -> Option<bool> {
    let Val::Entity(..) = left else { return None };
    match right {
        Val::Entity(..) => Some(equal(left, right)),
        _ => {
            let mut found = false;
            for e in Elems::of(right)?.iter() {
                let Val::Entity(..) = e else { return None };
                found |= equal(left, e);
            }
            Some(found)
        }
    }
}

impl Expr {
    /// Evaluates the expression; `None` is a Cedar evaluation error.
    pub(crate) fn eval<'a>(&'a self, env: &Env<'a>) -> Option<Val<'a>> {
        Some(match self {
            Expr::Lit(lit) => lit.val(),
            Expr::Attr(slot) => env.attr(*slot)?,
            Expr::Principal => Val::Entity(KEY_TYPE, env.req?.key),
            Expr::Resource => Val::Entity(DEPLOYMENT_TYPE, &env.dep?.key),
            Expr::Action => Val::Entity(ACTION_TYPE, ROUTE),
            Expr::Not(e) => Val::Bool(!boolean(e.eval(env)?)?),
            Expr::Neg(e) => Val::Long(long(e.eval(env)?)?.checked_neg()?),
            Expr::And(a, b) => Val::Bool(boolean(a.eval(env)?)? && boolean(b.eval(env)?)?),
            Expr::Or(a, b) => Val::Bool(boolean(a.eval(env)?)? || boolean(b.eval(env)?)?),
            Expr::If(c, t, e) => match boolean(c.eval(env)?)? {
                true => t.eval(env)?,
                false => e.eval(env)?,
            },
            Expr::IsEmpty(e) => Val::Bool(Elems::of(e.eval(env)?)?.iter().next().is_none()),
            Expr::Like(e, pattern) => match e.eval(env)? {
                Val::Str(s) => Val::Bool(like(s, pattern)),
                _ => return None,
            },
            Expr::Is(e, ty, within_expr) => {
                let value = e.eval(env)?;
                let Val::Entity(t, _) = value else {
                    return None;
                };
                let is = t == ty;
                match within_expr {
                    Some(w) if is => Val::Bool(within(value, w.eval(env)?)?),
                    _ => Val::Bool(is),
                }
            }
            Expr::Bin(op, a, b) => binary(*op, a.eval(env)?, b.eval(env)?)?,
        })
    }

    /// Whether the expression evaluates to `true` (false, another value or an error: no).
    pub(crate) fn holds(&self, env: &Env<'_>) -> bool {
        matches!(self.eval(env), Some(Val::Bool(true)))
    }
}

fn binary<'a>(op: Op, a: Val<'a>, b: Val<'a>) -> Option<Val<'a>> {
    let longs = || Some((long(a)?, long(b)?));
    Some(match op {
        Op::Eq => Val::Bool(equal(a, b)),
        Op::Ne => Val::Bool(!equal(a, b)),
        Op::Lt => longs().map(|(x, y)| Val::Bool(x < y))?,
        Op::Le => longs().map(|(x, y)| Val::Bool(x <= y))?,
        Op::Gt => longs().map(|(x, y)| Val::Bool(x > y))?,
        Op::Ge => longs().map(|(x, y)| Val::Bool(x >= y))?,
        Op::Add => Val::Long(longs().and_then(|(x, y)| x.checked_add(y))?),
        Op::Sub => Val::Long(longs().and_then(|(x, y)| x.checked_sub(y))?),
        Op::Mul => Val::Long(longs().and_then(|(x, y)| x.checked_mul(y))?),
        Op::In => Val::Bool(within(a, b)?),
        Op::Contains => Val::Bool(Elems::of(a)?.contains(b)),
        Op::ContainsAll => Val::Bool(Elems::of(b)?.subset_of(Elems::of(a)?)),
        Op::ContainsAny => {
            let (a, b) = (Elems::of(a)?, Elems::of(b)?);
            Val::Bool(b.iter().any(|e| a.contains(e)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::schema::{Kind, Phase, ATTRS};

    /// Every slot reads the attribute of its name (the Cedar path builds its entities through
    /// [`Env::attr`] too, so only this test would see two attributes swapped): strings hold
    /// their attribute's name, integers their slot, and each phase's part alone suffices.
    #[test]
    fn every_slot_reads_its_own_attribute() {
        let req = RequestFacts {
            team: "team",
            key: "key",
            user: "user",
            classification: "classification",
            sla_ms: 4,
            budget_left_cents: 5,
            model: "model",
            stream: true,
            ingress: "ingress",
        };
        let dep = Deployment {
            key: "d".into(),
            provider: "provider".into(),
            upstream: "upstream".into(),
            model: "model".into(),
            group: "group".into(),
            tags: vec!["tags".into()],
            input_price_micro_usd: 14,
            output_price_micro_usd: 15,
        };
        let obs = Observed {
            deployment: 0,
            latency_ms: 16,
            ttft_ms: 17,
            error_rate_pct: 18,
            circuit: "circuit",
            in_flight: 20,
        };
        for (slot, a) in ATTRS.iter().enumerate() {
            let env = match a.phase() {
                Phase::Request => Env {
                    req: Some(&req),
                    ..Env::default()
                },
                Phase::Static => Env {
                    dep: Some(&dep),
                    ..Env::default()
                },
                Phase::Observed => Env {
                    obs: Some(&obs),
                    ..Env::default()
                },
            };
            match (a.kind, env.attr(slot)) {
                (Kind::Str, Some(Val::Str(s))) => assert_eq!(s, a.name),
                (Kind::Long, Some(Val::Long(n))) => assert_eq!(n, slot as i64, "{}", a.name),
                (Kind::Bool, Some(Val::Bool(b))) => assert!(b),
                (Kind::StrSet, Some(Val::Tags(t))) => assert_eq!(t, [a.name.to_owned()]),
                (kind, other) => panic!("slot {slot} ({}, {kind:?}) reads {other:?}", a.name),
            }
        }
        assert!(Env::default().attr(ATTRS.len()).is_none());
    }

    fn pat(p: &str) -> Vec<PatElem> {
        p.chars()
            .map(|c| {
                if c == '*' {
                    PatElem::Wildcard
                } else {
                    PatElem::Char(c)
                }
            })
            .collect()
    }

    #[test]
    fn like_matches_as_cedar_does() {
        assert!(like("gpt-4o-mini", &pat("gpt-*")));
        assert!(like("gpt-4o-mini", &pat("*mini")));
        assert!(like("gpt-4o-mini", &pat("*4o*")));
        assert!(like("", &pat("*")));
        assert!(!like("gpt-4o", &pat("*mini")));
        assert!(!like("abc", &pat("ab")));
        assert!(like("aXbXc", &pat("a*b*c")));
    }

    #[test]
    fn overflow_is_an_error() {
        let e = Expr::Bin(
            Op::Add,
            Box::new(Expr::Lit(Lit::Long(i64::MAX))),
            Box::new(Expr::Lit(Lit::Long(1))),
        );
        assert!(e.eval(&Env::default()).is_none());
    }

    #[test]
    fn sets_compare_as_sets() {
        let a = [
            Lit::Str("x".into()),
            Lit::Str("y".into()),
            Lit::Str("x".into()),
        ];
        let tags = ["y".to_owned(), "x".to_owned()];
        assert!(equal(Val::Set(&a), Val::Tags(&tags)));
        assert!(!equal(Val::Set(&a[..1]), Val::Tags(&tags)));
    }
}
