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
    /// `attr <op> (attr2 + n)` or `attr <op> (attr2 - n)` (the fifth field: `Add` or `Sub`) on two
    /// `Long` attributes: an SLA rule's `resource.ttft_ms > context.sla_ms + 200`.
    LongShifted(usize, Op, usize, Op, i64),
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

/// `(slot, Add | Sub, n)` of `attr + n`, `n + attr` or `attr - n` on a `Long` attribute.
fn shifted(expr: &Expr) -> Option<(usize, Op, i64)> {
    let long = |slot: usize| kind(slot) == Some(Kind::Long);
    let Expr::Bin(op @ (Op::Add | Op::Sub), a, b) = expr else {
        return None;
    };
    match (&**a, &**b) {
        (Expr::Attr(y), Expr::Lit(Lit::Long(n))) if long(*y) => Some((*y, *op, *n)),
        (Expr::Lit(Lit::Long(n)), Expr::Attr(y)) if *op == Op::Add && long(*y) => {
            Some((*y, Op::Add, *n))
        }
        _ => None,
    }
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
                (op, Expr::Attr(x), b) if is_comparison(op) && long(x) => match shifted(&b) {
                    Some((y, arith, n)) => Check::LongShifted(x, op, y, arith, n),
                    None => Check::Expr(Expr::Bin(op, Box::new(Expr::Attr(x)), Box::new(b))),
                },
                (op, a, Expr::Attr(x)) if is_comparison(op) && long(x) => match shifted(&a) {
                    Some((y, arith, n)) => Check::LongShifted(x, flipped(op), y, arith, n),
                    None => Check::Expr(Expr::Bin(op, Box::new(a), Box::new(Expr::Attr(x)))),
                },
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
            Check::LongShifted(x, op, y, arith, n) => match (env.attr(*x)?, env.attr(*y)?) {
                (Val::Long(v), Val::Long(w)) => {
                    let shifted = match arith {
                        Op::Add => w.checked_add(*n)?,
                        _ => w.checked_sub(*n)?,
                    };
                    compare(*op, v, shifted)
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::facts::{Observed, RequestFacts};

    const SLA: usize = 4; // context.sla_ms
    const TTFT: usize = 17; // resource.ttft_ms

    fn attr(slot: usize) -> Box<Expr> {
        Box::new(Expr::Attr(slot))
    }

    fn long(n: i64) -> Box<Expr> {
        Box::new(Expr::Lit(Lit::Long(n)))
    }

    /// Every shape of `attr <op> attr ± n`, as the check and as the expression, over values
    /// around the edges (overflow is an error both ways).
    #[test]
    fn shifted_comparisons_answer_as_their_expressions() {
        let ops = [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge];
        let values = [i64::MIN, -5, 0, 195, 200, 205, i64::MAX];
        for op in ops {
            for arith in [Op::Add, Op::Sub] {
                for n in [0, 5, -7, i64::MAX, i64::MIN] {
                    let sum = Expr::Bin(arith, attr(SLA), long(n));
                    let mut shapes = vec![
                        Expr::Bin(op, attr(TTFT), Box::new(sum.clone())),
                        Expr::Bin(op, Box::new(sum), attr(TTFT)),
                    ];
                    if arith == Op::Add {
                        shapes.push(Expr::Bin(
                            op,
                            attr(TTFT),
                            Box::new(Expr::Bin(Op::Add, long(n), attr(SLA))),
                        ));
                    }
                    for expr in shapes {
                        let check = Check::of(expr.clone());
                        assert!(matches!(check, Check::LongShifted(..)), "{expr:?}");
                        let negated = Check::of(Expr::Not(Box::new(expr.clone())));
                        for sla in values {
                            for ttft in values {
                                let req = RequestFacts {
                                    sla_ms: sla,
                                    ..RequestFacts::default()
                                };
                                let obs = Observed {
                                    ttft_ms: ttft,
                                    ..Observed::new(0)
                                };
                                let env = Env {
                                    req: Some(&req),
                                    obs: Some(&obs),
                                    ..Env::default()
                                };
                                let want = match expr.eval(&env) {
                                    Some(Val::Bool(b)) => Some(b),
                                    _ => None,
                                };
                                assert_eq!(check.eval(&env), want, "{expr:?} at {sla}, {ttft}");
                                assert_eq!(negated.eval(&env), want.map(|b| !b));
                            }
                        }
                        // a part absent from the environment is an error, as the expression's
                        assert_eq!(check.eval(&Env::default()), None);
                    }
                }
            }
        }
    }

    #[test]
    fn other_shapes_stay_expressions() {
        // `n - attr` is not a shift of the attribute; a string attribute is not a long
        let minus = Expr::Bin(
            Op::Gt,
            attr(TTFT),
            Box::new(Expr::Bin(Op::Sub, long(5), attr(SLA))),
        );
        assert!(matches!(Check::of(minus), Check::Expr(_)));
        let team = Expr::Bin(
            Op::Gt,
            attr(TTFT),
            Box::new(Expr::Bin(Op::Add, attr(0), long(1))),
        );
        assert!(matches!(Check::of(team), Check::Expr(_)));
    }
}
