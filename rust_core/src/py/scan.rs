//! The guardrail scanner for Python: `Scanner` (compiled rules), `GuardPolicy` (a scanner with
//! one action per rule) and `ScanResult` (see [`crate::scan`]).
//!
//! Rules cross the boundary once, as dicts with the keys of [`RuleDef`], into a shared
//! [`Scanner`]; a policy is the scanner (`Arc`) and its action bytes, cheap to keep per team and
//! key. Scanning a request body always runs with the GIL released.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use super::DETACH_MIN_SCAN_BYTES;
use crate::error as core_error;
use crate::scan::{
    builtin, Category, Finding, JsonScan, Policy, RuleDef, Scanner, Validator, BLOCK, REDACT,
};

/// A finding as Python sees it: (rule id, category, action, path, start, end).
type PyFinding = (String, &'static str, u8, String, usize, usize);

/// The keys a rule dict may have.
const KEYS: [&str; 11] = [
    "id",
    "category",
    "description",
    "regex",
    "keywords",
    "entropy",
    "secret_group",
    "allowlist",
    "stopwords",
    "validator",
    "max_len",
];

/// A `RuleError` for rule `index`.
fn rule_error(index: usize, id: &str, message: impl Into<String>) -> PyErr {
    core_error::RuleError {
        index,
        id: id.to_owned(),
        message: message.into(),
    }
    .into()
}

/// The rule of a dict (keys as [`RuleDef`]'s fields; category and validator by name).
fn rule_from_dict(index: usize, dict: &Bound<'_, PyDict>) -> PyResult<RuleDef> {
    let id: String = match dict.get_item("id")? {
        Some(value) => value
            .extract()
            .map_err(|_| rule_error(index, "", "\"id\" must be a string"))?,
        None => return Err(rule_error(index, "", "a rule needs an \"id\"")),
    };
    for key in dict.keys() {
        let key: String = key.extract().unwrap_or_default();
        if !KEYS.contains(&key.as_str()) {
            return Err(rule_error(index, &id, format!("unknown key {key:?}")));
        }
    }
    let field = |key: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        Ok(dict.get_item(key)?.filter(|value| !value.is_none()))
    };
    let bad = |key: &str, kind: &str| rule_error(index, &id, format!("{key:?} must be {kind}"));
    let text = |key: &str| -> PyResult<Option<String>> {
        field(key)?
            .map(|v| v.extract::<String>().map_err(|_| bad(key, "a string")))
            .transpose()
    };
    let texts = |key: &str| -> PyResult<Vec<String>> {
        Ok(field(key)?
            .map(|v| {
                v.extract::<Vec<String>>()
                    .map_err(|_| bad(key, "a list of strings"))
            })
            .transpose()?
            .unwrap_or_default())
    };
    let regex = text("regex")?.ok_or_else(|| rule_error(index, &id, "a rule needs a \"regex\""))?;
    let category = match text("category")? {
        None => Category::Custom,
        Some(name) => Category::from_name(&name).ok_or_else(|| {
            bad(
                "category",
                "\"secret\", \"pii\", \"injection\" or \"custom\"",
            )
        })?,
    };
    let validator = match text("validator")? {
        None => Validator::None,
        Some(name) => Validator::from_name(&name)
            .ok_or_else(|| bad("validator", "\"none\", \"luhn\" or \"iban\""))?,
    };
    let mut rule = RuleDef::new(id.clone(), category, regex);
    rule.description = text("description")?.unwrap_or_default();
    rule.keywords = texts("keywords")?;
    rule.allowlist = texts("allowlist")?;
    rule.stopwords = texts("stopwords")?;
    rule.validator = validator;
    rule.entropy = field("entropy")?
        .map(|v| v.extract::<f64>().map_err(|_| bad("entropy", "a number")))
        .transpose()?;
    rule.secret_group = field("secret_group")?
        .map(|v| {
            v.extract::<usize>()
                .map_err(|_| bad("secret_group", "an int >= 0"))
        })
        .transpose()?
        .unwrap_or(0);
    rule.max_len = field("max_len")?
        .map(|v| {
            v.extract::<usize>()
                .map_err(|_| bad("max_len", "an int >= 1"))
        })
        .transpose()?;
    Ok(rule)
}

/// The dict of a rule (every key).
fn rule_to_dict<'py>(py: Python<'py>, rule: &RuleDef) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("id", &rule.id)?;
    dict.set_item("category", rule.category.name())?;
    dict.set_item("description", &rule.description)?;
    dict.set_item("regex", &rule.regex)?;
    dict.set_item("keywords", &rule.keywords)?;
    dict.set_item("entropy", rule.entropy)?;
    dict.set_item("secret_group", rule.secret_group)?;
    dict.set_item("allowlist", &rule.allowlist)?;
    dict.set_item("stopwords", &rule.stopwords)?;
    dict.set_item("validator", rule.validator.name())?;
    dict.set_item("max_len", rule.max_len)?;
    Ok(dict)
}

/// Compiled guardrail rules (Python `Scanner`): one per worker, shared by its policies.
#[pyclass(name = "Scanner", module = "ferrogate._core", frozen)]
pub struct PyScanner {
    inner: Arc<Scanner>,
}

#[pymethods]
impl PyScanner {
    #[new]
    fn new(py: Python<'_>, rules: Vec<Bound<'_, PyDict>>) -> PyResult<Self> {
        let defs = rules
            .iter()
            .enumerate()
            .map(|(index, dict)| rule_from_dict(index, dict))
            .collect::<PyResult<Vec<_>>>()?;
        let scanner = py.detach(|| Scanner::new(defs))?;
        Ok(Self {
            inner: Arc::new(scanner),
        })
    }

    /// The built-in rules, as dicts a `Scanner` takes.
    #[staticmethod]
    fn builtin_rules(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
        let dicts = builtin::rules()
            .iter()
            .map(|rule| rule_to_dict(py, rule))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, dicts)
    }

    /// The rules' ids, in order.
    #[getter]
    fn rule_ids(&self) -> Vec<String> {
        (0..self.inner.len())
            .map(|i| self.inner.rule_id(i).to_owned())
            .collect()
    }

    /// The rules' categories, in order.
    #[getter]
    fn categories(&self) -> Vec<&'static str> {
        (0..self.inner.len())
            .map(|i| self.inner.category(i).name())
            .collect()
    }

    /// The policy of `actions`: one byte per rule, 0 off, 1 log, 2 redact, 3 block.
    fn policy(&self, actions: &[u8]) -> PyResult<PyGuardPolicy> {
        let policy = Policy::new(Arc::clone(&self.inner), actions.to_vec())?;
        Ok(PyGuardPolicy { policy })
    }
}

/// A scanner with the actions of its rules (Python `GuardPolicy`); immutable.
#[pyclass(name = "GuardPolicy", module = "ferrogate._core", frozen)]
pub struct PyGuardPolicy {
    policy: Policy,
}

impl PyGuardPolicy {
    /// The policy (for the stream relay's guard stage).
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    fn finding(&self, rule: usize, path: String, start: usize, end: usize) -> PyFinding {
        let scanner = self.policy.scanner();
        (
            scanner.rule_id(rule).to_owned(),
            scanner.category(rule).name(),
            self.policy.action(rule),
            path,
            start,
            end,
        )
    }

    fn result(
        &self,
        findings: Vec<PyFinding>,
        body: Option<Py<PyBytes>>,
        text: Option<String>,
    ) -> PyScanResult {
        let blocked = findings.iter().find(|f| f.2 == BLOCK).cloned();
        PyScanResult {
            findings,
            body,
            text,
            blocked,
        }
    }
}

#[pymethods]
impl PyGuardPolicy {
    /// Whether any rule is not off.
    #[getter]
    fn active(&self) -> bool {
        self.policy.active()
    }

    /// Scans a JSON request body; `None` when nothing is found. Raises `InvalidBodyError` for a
    /// body that is not JSON. Runs with the GIL released.
    fn scan_json(&self, py: Python<'_>, body: &[u8]) -> PyResult<Option<PyScanResult>> {
        let JsonScan { findings, body } = if body.len() >= DETACH_MIN_SCAN_BYTES {
            py.detach(|| self.policy.scan_json(body))?
        } else {
            self.policy.scan_json(body)?
        };
        if findings.is_empty() {
            return Ok(None);
        }
        let findings = findings
            .into_iter()
            .map(|f| self.finding(f.rule, f.path, f.start, f.end))
            .collect();
        let body = body.map(|bytes| PyBytes::new(py, &bytes).unbind());
        Ok(Some(self.result(findings, body, None)))
    }

    /// Scans a text (MCP tool arguments and results); `None` when nothing is found. The result's
    /// `text` is the redacted text when some finding is redact and none is block.
    fn scan_text(&self, py: Python<'_>, text: &str) -> Option<PyScanResult> {
        let run = || {
            let found: Vec<Finding> = self.policy.find(text);
            let redact = found.iter().any(|f| self.policy.action(f.rule) == REDACT)
                && !found.iter().any(|f| self.policy.action(f.rule) == BLOCK);
            let redacted = redact.then(|| self.policy.redact_text(text));
            (found, redacted)
        };
        let (found, redacted) = if text.len() >= DETACH_MIN_SCAN_BYTES {
            py.detach(run)
        } else {
            run()
        };
        if found.is_empty() {
            return None;
        }
        let findings = found
            .iter()
            .map(|f| self.finding(f.rule, String::new(), f.start, f.end))
            .collect();
        Some(self.result(findings, None, redacted))
    }

    /// `text` with every redact and block finding replaced by `[REDACTED:<rule id>]`.
    fn redact_text(&self, py: Python<'_>, text: &str) -> String {
        if text.len() >= DETACH_MIN_SCAN_BYTES {
            py.detach(|| self.policy.redact_text(text))
        } else {
            self.policy.redact_text(text)
        }
    }
}

/// What a scan found (Python `ScanResult`).
#[pyclass(name = "ScanResult", module = "ferrogate._core", frozen)]
pub struct PyScanResult {
    /// Every finding: (rule id, category, action, path, start, end).
    #[pyo3(get)]
    findings: Vec<PyFinding>,
    /// `scan_json`: the redacted body, when some finding is redact and none is block.
    #[pyo3(get)]
    body: Option<Py<PyBytes>>,
    /// `scan_text`: the redacted text, when some finding is redact and none is block.
    #[pyo3(get)]
    text: Option<String>,
    /// The first finding whose action is block.
    #[pyo3(get)]
    blocked: Option<PyFinding>,
}

#[pymethods]
impl PyScanResult {
    fn __repr__(&self) -> String {
        let rules: Vec<&str> = self.findings.iter().map(|f| f.0.as_str()).collect();
        format!(
            "ScanResult(findings={rules:?}, redacted={}, blocked={})",
            self.body.is_some() || self.text.is_some(),
            self.blocked.is_some()
        )
    }
}

/// Registers the classes.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyScanner>()?;
    m.add_class::<PyGuardPolicy>()?;
    m.add_class::<PyScanResult>()?;
    Ok(())
}
