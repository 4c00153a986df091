//! [`Policy`]: a shared [`Scanner`] with one action byte per rule; what a team's or a key's
//! effective guardrail settings compile to. Cheap to clone and to keep per team/key.

use std::sync::Arc;

use super::json::{scan_json, JsonScan};
use super::scanner::{Scanner, Scratch, BLOCK, OFF, REDACT};
use super::stream::StreamRedactor;
use super::Finding;
use crate::error::ScanError;

/// A scanner and the actions of its rules (0 off, 1 log, 2 redact, 3 block).
#[derive(Debug, Clone)]
pub struct Policy {
    scanner: Arc<Scanner>,
    actions: Arc<[u8]>,
}

impl Policy {
    /// A policy of `scanner` with `actions`, one byte per rule, each 0 to 3.
    pub fn new(scanner: Arc<Scanner>, actions: Vec<u8>) -> Result<Policy, ScanError> {
        if actions.len() != scanner.len() {
            return Err(ScanError::InvalidActions(format!(
                "{} action bytes for {} rules",
                actions.len(),
                scanner.len()
            )));
        }
        if let Some(index) = actions.iter().position(|&a| a > BLOCK) {
            return Err(ScanError::InvalidActions(format!(
                "action {} of rule {:?} is not 0 (off), 1 (log), 2 (redact) or 3 (block)",
                actions[index],
                scanner.rule_id(index)
            )));
        }
        Ok(Policy {
            scanner,
            actions: actions.into(),
        })
    }

    /// The scanner.
    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    /// The action bytes, one per rule.
    pub fn actions(&self) -> &[u8] {
        &self.actions
    }

    /// The action of rule `index`.
    pub fn action(&self, index: usize) -> u8 {
        self.actions.get(index).copied().unwrap_or(OFF)
    }

    /// Whether any rule is not off.
    pub fn active(&self) -> bool {
        self.actions.iter().any(|&a| a != OFF)
    }

    /// The findings in `text` ([`Scanner::find`]).
    pub fn find(&self, text: &str) -> Vec<Finding> {
        self.scanner.find(text, &self.actions)
    }

    /// `text` with its redact and block findings replaced by placeholders, redacted again until
    /// no finding is left ([`Scanner::redact_again`]).
    pub fn redact_text(&self, text: &str) -> String {
        let findings = self.find(text);
        if !findings.iter().any(|f| self.action(f.rule) >= REDACT) {
            return text.to_owned();
        }
        let once = self.scanner.redact(text, &findings, &self.actions);
        self.scanner
            .redact_again(once, &self.actions, &mut Scratch::default())
    }

    /// Scans a JSON request body ([`scan_json`]).
    pub fn scan_json(&self, body: &[u8]) -> Result<JsonScan, ScanError> {
        scan_json(&self.scanner, body, &self.actions)
    }

    /// A redactor for one text channel of a streamed answer ([`StreamRedactor`]).
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor::new(self)
    }
}
