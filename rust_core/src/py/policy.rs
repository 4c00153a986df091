//! The routing rules for Python: `RoutePolicy` (see [`crate::policy`]).
//!
//! The rules cross once, as text; each deployment once, at registration; a decision takes the
//! request's facts as one `RouteRequest` and each candidate as a tuple, and answers one tuple per
//! candidate. Rule ids are kept as Python strings, so an answer's lists share them. A decision
//! takes a few microseconds: it keeps the GIL.

use std::sync::{PoisonError, RwLock};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

use super::circuit::PyCircuits;
use crate::circuit::{State, View};
use crate::policy::{Deployment, Observed, RequestFacts, RoutePolicy, Verdict};
use crate::ratelimit::now_ns;

/// A verdict as Python sees it: (deployment id, eligible, score, ids of the rules that decided).
type PyVerdict<'py> = (usize, bool, i64, Bound<'py, PyList>);

/// The circuit states a candidate may be in.
const CIRCUITS: [&str; 3] = ["closed", "open", "half_open"];

/// One candidate tuple: (deployment id, latency_ms, ttft_ms, error_rate_pct, circuit, in_flight).
fn candidate(item: &Bound<'_, PyAny>) -> PyResult<Observed<'static>> {
    let bad = || {
        PyTypeError::new_err(
            "a candidate is a tuple (id, latency_ms, ttft_ms, error_rate_pct, circuit, in_flight)",
        )
    };
    let tuple = item.cast::<PyTuple>().map_err(|_| bad())?;
    if tuple.len() != 6 {
        return Err(bad());
    }
    let long = |i: usize| -> PyResult<i64> {
        tuple
            .get_borrowed_item(i)?
            .extract::<i64>()
            .map_err(|_| bad())
    };
    let state = tuple.get_borrowed_item(4)?;
    let state = state.cast::<PyString>().map_err(|_| bad())?;
    let state = state.to_str()?;
    let circuit = CIRCUITS.into_iter().find(|c| *c == state).ok_or_else(|| {
        PyValueError::new_err(format!(
            "circuit {state:?}: expected closed, open or half_open"
        ))
    })?;
    Ok(Observed {
        deployment: tuple
            .get_borrowed_item(0)?
            .extract::<usize>()
            .map_err(|_| bad())?,
        latency_ms: long(1)?,
        ttft_ms: long(2)?,
        error_rate_pct: long(3)?,
        circuit,
        in_flight: long(5)?,
    })
}

/// Compiled routing rules and the deployments registered with them (Python `RoutePolicy`).
#[pyclass(name = "RoutePolicy", module = "ferrogate._core", frozen)]
pub struct PyRoutePolicy {
    inner: RwLock<RoutePolicy>,
    ids: Vec<Py<PyString>>,
}

impl PyRoutePolicy {
    fn verdicts(
        &self,
        req: &RequestFacts<'_>,
        candidates: &Bound<'_, PyList>,
    ) -> PyResult<Vec<Verdict>> {
        let observed = candidates
            .iter()
            .map(|item| candidate(&item))
            .collect::<PyResult<Vec<_>>>()?;
        let policy = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        Ok(policy.decide(req, &observed)?)
    }

    fn wrap(py: Python<'_>, policy: RoutePolicy) -> Self {
        let ids = policy
            .ids()
            .iter()
            .map(|id| PyString::new(py, id).unbind())
            .collect();
        Self {
            inner: RwLock::new(policy),
            ids,
        }
    }
}

/// A request's facts as the routing rules know them, built once per request and passed by
/// reference to every decision: no per-call conversion of nine arguments.
#[pyclass(name = "RouteRequest", module = "ferrogate._core", frozen, get_all, eq)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyRouteRequest {
    team: String,
    key: String,
    user: String,
    classification: String,
    sla_ms: i64,
    budget_left_cents: i64,
    model: String,
    stream: bool,
    ingress: String,
}

impl PyRouteRequest {
    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            team: &self.team,
            key: &self.key,
            user: &self.user,
            classification: &self.classification,
            sla_ms: self.sla_ms,
            budget_left_cents: self.budget_left_cents,
            model: &self.model,
            stream: self.stream,
            ingress: &self.ingress,
        }
    }
}

#[pymethods]
impl PyRouteRequest {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(
        signature = (team = String::new(), key = String::new(), user = String::new(), classification = String::new(), sla_ms = 0, budget_left_cents = -1, model = String::new(), stream = false, ingress = String::from("openai")),
        text_signature = "(team='', key='', user='', classification='', sla_ms=0, budget_left_cents=-1, model='', stream=False, ingress='openai')"
    )]
    fn new(
        team: String,
        key: String,
        user: String,
        classification: String,
        sla_ms: i64,
        budget_left_cents: i64,
        model: String,
        stream: bool,
        ingress: String,
    ) -> Self {
        Self {
            team,
            key,
            user,
            classification,
            sla_ms,
            budget_left_cents,
            model,
            stream,
            ingress,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "RouteRequest(team={:?}, key={:?}, user={:?}, classification={:?}, sla_ms={}, budget_left_cents={}, model={:?}, stream={}, ingress={:?})",
            self.team,
            self.key,
            self.user,
            self.classification,
            self.sla_ms,
            self.budget_left_cents,
            self.model,
            if self.stream { "True" } else { "False" },
            self.ingress
        )
    }
}

/// A model group's targets for one classification, in their base order (priority, or price),
/// with each one's `rule_pair` `(deployment id, circuit slot)` read once, when the routing table
/// is built: what [`PyRoutePolicy::order_group`] orders per request without reading attributes.
#[pyclass(name = "RouteTargets", module = "ferrogate._core", frozen)]
pub struct PyRouteTargets {
    items: Py<PyTuple>,
    pairs: Vec<(usize, usize)>,
}

#[pymethods]
impl PyRouteTargets {
    /// `targets`: a sequence of objects with a `rule_pair` attribute.
    #[new]
    fn new(py: Python<'_>, targets: &Bound<'_, PyAny>) -> PyResult<Self> {
        let items = PyTuple::new(py, targets.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
        let name = pyo3::intern!(py, "rule_pair");
        let pairs = items
            .iter()
            .map(|t| t.getattr(name)?.extract::<(usize, usize)>())
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Self {
            items: items.unbind(),
            pairs,
        })
    }

    fn __len__(&self) -> usize {
        self.pairs.len()
    }
}

#[pymethods]
impl PyRoutePolicy {
    /// Parses and validates `text` (Cedar policies); `source` names it in errors.
    #[new]
    fn new(py: Python<'_>, text: &str, source: &str) -> PyResult<Self> {
        let policy = RoutePolicy::new(text, source)?;
        Ok(Self::wrap(py, policy))
    }

    /// The rules of several `(text, source)` pairs as one set (ids unique across them).
    #[staticmethod]
    fn from_sources(py: Python<'_>, sources: Vec<(String, String)>) -> PyResult<Self> {
        let pairs: Vec<(&str, &str)> = sources
            .iter()
            .map(|(t, s)| (t.as_str(), s.as_str()))
            .collect();
        let policy = RoutePolicy::from_sources(&pairs)?;
        Ok(Self::wrap(py, policy))
    }

    /// Registers a deployment's fixed attributes; returns its id for `decide`.
    #[allow(clippy::too_many_arguments)]
    fn deployment(
        &self,
        key: String,
        provider: String,
        upstream: String,
        model: String,
        group: String,
        tags: Vec<String>,
        input_price_micro_usd: i64,
        output_price_micro_usd: i64,
    ) -> usize {
        let mut policy = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        policy.deployment(Deployment {
            key,
            provider,
            upstream,
            model,
            group,
            tags,
            input_price_micro_usd,
            output_price_micro_usd,
        })
    }

    /// What the rules say of each candidate, in input order: (id, eligible, score, ids of the
    /// rules that decided).
    fn decide<'py>(
        &self,
        py: Python<'py>,
        request: PyRef<'_, PyRouteRequest>,
        candidates: &Bound<'py, PyList>,
    ) -> PyResult<Vec<PyVerdict<'py>>> {
        let req = request.facts();
        self.verdicts(&req, candidates)?
            .into_iter()
            .map(|v| {
                let ids = PyList::new(py, v.rules.iter().map(|&i| self.ids[i].bind(py)))?;
                Ok((v.deployment, v.eligible, v.score, ids))
            })
            .collect()
    }

    /// The eligible candidates' ids, highest score first (ties in input order): `decide` reduced
    /// to what the router needs.
    fn order(
        &self,
        request: PyRef<'_, PyRouteRequest>,
        candidates: &Bound<'_, PyList>,
    ) -> PyResult<Vec<usize>> {
        let req = request.facts();
        let observed = candidates
            .iter()
            .map(|item| candidate(&item))
            .collect::<PyResult<Vec<_>>>()?;
        let policy = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let positions = policy.order(&req, &observed)?;
        Ok(positions
            .into_iter()
            .map(|at| observed[at].deployment)
            .collect())
    }

    /// The router's whole ordering of a group in one call: `group`'s targets in their base order
    /// (or in `base`, positions in it, when the strategy ordered them itself: `capacity`), then, as
    /// the strategy says, `first` (>= 0: that position goes first, the others keep their order:
    /// `weighted`'s draw) or `by` (>= 0: ranked by the circuit table's in-flight count (0),
    /// latency EWMA (1) or time-to-first-token EWMA (2), unknown EWMAs first, ties kept:
    /// `least_in_flight`, `latency`), then the rules (the eligible ones, highest score first, ties
    /// in that order), each target's health read once for both. Returns a new list of targets.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (request, circuits, group, by, first, base = None))]
    fn order_group<'py>(
        &self,
        py: Python<'py>,
        request: PyRef<'_, PyRouteRequest>,
        circuits: PyRef<'_, PyCircuits>,
        group: PyRef<'_, PyRouteTargets>,
        by: i64,
        first: i64,
        base: Option<Vec<usize>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let req = request.facts();
        let n = group.pairs.len();
        let at = match base {
            Some(base) if base.iter().any(|&i| i >= n) => {
                return Err(PyValueError::new_err(
                    "a base position is outside the group",
                ));
            }
            Some(base) => base,
            None => {
                let mut at: Vec<usize> = (0..n).collect();
                if let Ok(first) = usize::try_from(first) {
                    if first < n {
                        at[..=first].rotate_right(1);
                    }
                }
                at
            }
        };
        let table = circuits.table();
        let now = now_ns();
        let mut seen = Vec::with_capacity(n);
        for &i in &at {
            let (deployment, slot) = group.pairs[i];
            let view = table.view_at(slot, now)?;
            let rank = match by {
                0 => f64::from(view.in_flight),
                1 => view.latency_ewma_s.unwrap_or(-1.0),
                _ => view.ttft_ewma_s.unwrap_or(-1.0),
            };
            seen.push((rank, i, observed(deployment, &view)));
        }
        if by >= 0 {
            seen.sort_by(|a, b| a.0.total_cmp(&b.0)); // stable: ties keep the base order
        }
        let observed: Vec<Observed<'static>> = seen.iter().map(|s| s.2).collect();
        let positions = {
            let policy = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            policy.order(&req, &observed)?
        };
        let items = group.items.bind(py);
        PyList::new(
            py,
            positions
                .into_iter()
                .map(|p| items.get_item(seen[p].1))
                .collect::<PyResult<Vec<_>>>()?,
        )
    }

    /// The rules' ids, in source order (`@id`, else `policy<N>`).
    #[getter]
    fn ids(&self, py: Python<'_>) -> Vec<Py<PyString>> {
        self.ids.iter().map(|id| id.clone_ref(py)).collect()
    }

    fn __repr__(&self) -> String {
        let policy = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        format!(
            "RoutePolicy(rules={}, compiled={})",
            self.ids.len(),
            self.ids.len() - policy.cedar_rules()
        )
    }
}

/// A deployment as the rules see it, from its circuit's view.
fn observed(deployment: usize, v: &View) -> Observed<'static> {
    let ms = |s: Option<f64>| s.map_or(-1, |s| (s * 1000.0).round() as i64);
    Observed {
        deployment,
        latency_ms: ms(v.latency_ewma_s),
        ttft_ms: ms(v.ttft_ewma_s),
        error_rate_pct: (v.error_rate * 100.0).round() as i64,
        circuit: match v.state {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        },
        in_flight: i64::from(v.in_flight),
    }
}

/// Registers the class.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRoutePolicy>()?;
    m.add_class::<PyRouteRequest>()?;
    m.add_class::<PyRouteTargets>()
}
