//! Conjuncts as checks: the shapes routing rules are mostly made of (an attribute compared with a
//! constant or with another attribute, a tag test) evaluated directly, anything else through the
//! expression tree. A check gives the same answer as the expression it replaces: `Some(bool)`, or
//! `None` where the expression errors (an attribute of a part absent from the environment).

use super::eval::{Env, Expr, Lit, Op, Val};
use super::schema::{Kind, ATTRS};

/// One conjunct of a compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// `attr <op> n` on a `Long` attribute (op one of `== != < <= > >=`).
    LongConst(usize, Op, i64),
    /// `attr <op> attr` on two `Long` attributes.
    LongAttrs(usize, Op, usize),
    /// `attr == s` (`true`) or `attr != s` (`false`) on a `String` attribute.
    StrConst(usize, bool, String),
    /// `attr.contains(s)` on a `Set<String>` attribute.
    Contains(usize, String),
    /// The negation of a check.
    Not(Box<Check>),
    /// Any other expression.
    Expr(Expr),
}

fn kind(slot: usize) -> Option<Kind> {
    ATTRS.get(slot).map(|a| a.kind)
}

/// `op` with its operands swapped (`a < b` is `b > a`).
fn flipped(op: Op) -> Op {
    match op {
        Op::Lt => Op::Gt,
        Op::Le => Op::Ge,
        Op::Gt => Op::Lt,
        Op::Ge => Op::Le,
        other => other,
    }
}

fn compare(op: Op, x: i64, y: i64) -> Option<bool> {
    Some(match op {
        Op::Eq => x == y,
        Op::Ne => x != y,
        Op::Lt => x < y,
        Op::Le => x <= y,
        Op::Gt => x > y,
        Op::Ge => x >= y,
        _ => return None,
    })
}

fn is_comparison(op: Op) -> bool {
    matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge)
}

impl Check {
    /// The check of a conjunct.
    pub(crate) fn of(expr: Expr) -> Check {
        let long = |slot: usize| kind(slot) == Some(Kind::Long);
        match expr {
            Expr::Not(inner) => match Check::of(*inner) {
                Check::Expr(e) => Check::Expr(Expr::Not(Box::new(e))),
                check => Check::Not(Box::new(check)),
            },
            Expr::Bin(op, a, b) => match (op, *a, *b) {
                (op, Expr::Attr(x), Expr::Lit(Lit::Long(n))) if is_comparison(op) && long(x) => {
                    Check::LongConst(x, op, n)
                }
                (op, Expr::Lit(Lit::Long(n)), Expr::Attr(x)) if is_comparison(op) && long(x) => {
                    Check::LongConst(x, flipped(op), n)
                }
                (op, Expr::Attr(x), Expr::Attr(y)) if is_comparison(op) && long(x) && long(y) => {
                    Check::LongAttrs(x, op, y)
                }
                (Op::Eq | Op::Ne, Expr::Attr(x), Expr::Lit(Lit::Str(s)))
                | (Op::Eq | Op::Ne, Expr::Lit(Lit::Str(s)), Expr::Attr(x))
                    if kind(x) == Some(Kind::Str) =>
                {
                    Check::StrConst(x, op == Op::Eq, s)
                }
                (Op::Contains, Expr::Attr(x), Expr::Lit(Lit::Str(s)))
                    if kind(x) == Some(Kind::StrSet) =>
                {
                    Check::Contains(x, s)
                }
                (op, a, b) => Check::Expr(Expr::Bin(op, Box::new(a), Box::new(b))),
            },
            other => Check::Expr(other),
        }
    }

    /// The conjunct's value (`None`: an error).
    fn eval(&self, env: &Env<'_>) -> Option<bool> {
        match self {
            Check::LongConst(x, op, n) => match env.attr(*x)? {
                Val::Long(v) => compare(*op, v, *n),
                _ => None,
            },
            Check::LongAttrs(x, op, y) => match (env.attr(*x)?, env.attr(*y)?) {
                (Val::Long(v), Val::Long(w)) => compare(*op, v, w),
                _ => None,
            },
            Check::StrConst(x, eq, s) => match env.attr(*x)? {
                Val::Str(v) => Some((v == s) == *eq),
                _ => None,
            },
            Check::Contains(x, s) => match env.attr(*x)? {
                Val::Tags(tags) => Some(tags.iter().any(|t| t == s)),
                _ => None,
            },
            Check::Not(inner) => inner.eval(env).map(|b| !b),
            Check::Expr(e) => match e.eval(env)? {
                Val::Bool(b) => Some(b),
                _ => None,
            },
        }
    }

    /// Whether the conjunct evaluates to `true`.
    pub(crate) fn holds(&self, env: &Env<'_>) -> bool {
        self.eval(env) == Some(true)
    }
}
