//! The entity model routing rules are written against: one table of attributes ([`ATTRS`]) from
//! which the Cedar schema text ([`schema_text`]), the compiled evaluator's slots and the Cedar
//! entities of the reference path are all derived, so they cannot disagree.
//!
//! Principal `Key::"<key id>"`, action `Action::"route"`, resource `Deployment::"<upstream>/<model>"`;
//! `context` holds the request's facts. Every attribute is always present (no optional ones), so
//! `has` is true exactly for the attributes below.

/// The variable an attribute belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// `principal` (the API key's entity).
    Principal,
    /// `context` (the request).
    Context,
    /// `resource` (the deployment).
    Resource,
}

/// The Cedar type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `String`.
    Str,
    /// `Long` (a 64-bit integer).
    Long,
    /// `Bool`.
    Bool,
    /// `Set<String>`.
    StrSet,
}

/// When an attribute's value is known: it decides when a rule part that reads it is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Per request (principal and context): evaluated once per `decide`.
    Request,
    /// Per deployment, fixed at registration: evaluated once, by `deployment`.
    Static,
    /// Per candidate and request (health, load): evaluated for every candidate.
    Observed,
}

/// One attribute of the model.
#[derive(Debug, Clone, Copy)]
pub struct AttrDef {
    /// The variable it is read from.
    pub var: Var,
    /// Its name in rules.
    pub name: &'static str,
    /// Its Cedar type.
    pub kind: Kind,
}

impl AttrDef {
    /// When its value is known.
    pub fn phase(&self) -> Phase {
        match self.var {
            Var::Principal | Var::Context => Phase::Request,
            Var::Resource if OBSERVED.contains(&self.name) => Phase::Observed,
            Var::Resource => Phase::Static,
        }
    }
}

/// The resource attributes given per candidate (the rest are fixed at registration).
const OBSERVED: [&str; 5] = [
    "latency_ms",
    "ttft_ms",
    "error_rate_pct",
    "circuit",
    "in_flight",
];

const fn attr(var: Var, name: &'static str, kind: Kind) -> AttrDef {
    AttrDef { var, name, kind }
}

/// Every attribute, by slot (the index the compiled evaluator reads it at).
pub const ATTRS: [AttrDef; 21] = [
    attr(Var::Principal, "team", Kind::Str),
    attr(Var::Principal, "key", Kind::Str),
    attr(Var::Principal, "user", Kind::Str),
    attr(Var::Context, "classification", Kind::Str),
    attr(Var::Context, "sla_ms", Kind::Long),
    attr(Var::Context, "budget_left_cents", Kind::Long),
    attr(Var::Context, "model", Kind::Str),
    attr(Var::Context, "stream", Kind::Bool),
    attr(Var::Context, "ingress", Kind::Str),
    attr(Var::Resource, "provider", Kind::Str),
    attr(Var::Resource, "upstream", Kind::Str),
    attr(Var::Resource, "model", Kind::Str),
    attr(Var::Resource, "group", Kind::Str),
    attr(Var::Resource, "tags", Kind::StrSet),
    attr(Var::Resource, "input_price_micro_usd", Kind::Long),
    attr(Var::Resource, "output_price_micro_usd", Kind::Long),
    attr(Var::Resource, "latency_ms", Kind::Long),
    attr(Var::Resource, "ttft_ms", Kind::Long),
    attr(Var::Resource, "error_rate_pct", Kind::Long),
    attr(Var::Resource, "circuit", Kind::Str),
    attr(Var::Resource, "in_flight", Kind::Long),
];

/// The slot of `var.name`, if the model has that attribute.
pub fn slot(var: Var, name: &str) -> Option<usize> {
    ATTRS.iter().position(|a| a.var == var && a.name == name)
}

/// The principal's entity type.
pub const KEY_TYPE: &str = "Key";
/// The resource's entity type.
pub const DEPLOYMENT_TYPE: &str = "Deployment";
/// The action's entity type.
pub const ACTION_TYPE: &str = "Action";
/// The one action's id.
pub const ROUTE: &str = "route";

fn cedar_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "String",
        Kind::Long => "Long",
        Kind::Bool => "Bool",
        Kind::StrSet => "Set<String>",
    }
}

fn record(var: Var) -> String {
    let fields: Vec<String> = ATTRS
        .iter()
        .filter(|a| a.var == var)
        .map(|a| format!("{}: {}", a.name, cedar_type(a.kind)))
        .collect();
    format!("{{ {} }}", fields.join(", "))
}

/// The Cedar schema (human-readable syntax) rules are validated against.
///
/// ```
/// let text = _core::policy::schema::schema_text();
/// assert!(text.contains("entity Deployment = {"));
/// assert!(text.contains("latency_ms: Long"));
/// ```
pub fn schema_text() -> String {
    format!(
        "entity {KEY_TYPE} = {};\nentity {DEPLOYMENT_TYPE} = {};\naction \"{ROUTE}\" appliesTo {{\n  principal: [{KEY_TYPE}],\n  resource: [{DEPLOYMENT_TYPE}],\n  context: {}\n}};\n",
        record(Var::Principal),
        record(Var::Resource),
        record(Var::Context),
    )
}
