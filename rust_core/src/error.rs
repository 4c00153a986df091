//! Error types, one `thiserror` enum per component.
//!
//! They are plain Rust errors; `py/errors.rs` translates each of them, in one place, into the
//! typed Python exception hierarchy of `ferrogate._core` (`CoreError` and its subclasses).

/// Errors of the incremental SSE parser ([`crate::sse::SseParser`]) and of the stream meter
/// built on it.
///
/// Both are fatal for the stream: the parser keeps returning the same error afterwards, since a
/// stream that broke a bound is not trusted again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A single line (of any field, or a comment) is longer than the configured bound.
    #[error("SSE line longer than the limit of {limit} bytes")]
    LineTooLong {
        /// The configured `max_event_bytes`.
        limit: usize,
    },
    /// The data buffered for one event is larger than the configured bound.
    #[error("SSE event larger than the limit of {limit} bytes")]
    EventTooLarge {
        /// The configured `max_event_bytes`.
        limit: usize,
    },
}

/// Errors of the tokenizer component ([`crate::tokens`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The encoding name is not one this build bundles (`o200k_base`, `cl100k_base`).
    #[error("unknown encoding {0:?}: expected \"o200k_base\" or \"cl100k_base\"")]
    UnknownEncoding(String),
    /// A chat request body could not be read as an OpenAI chat-completions request.
    #[error("invalid chat request body: {0}")]
    InvalidBody(String),
}

/// Errors of the rate limiter ([`crate::ratelimit`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A limit, period or cost that is not a usable number (non-finite, not positive, ...).
    #[error("invalid rate: {0}")]
    InvalidRate(String),
    /// A table capacity of 0, or too large to map.
    #[error("invalid limiter capacity {0}: expected 1 to 268435456 slots")]
    InvalidCapacity(usize),
    /// The shared table's file could not be created, locked, sized or mapped.
    #[error("limiter table {path}: {message}")]
    Io {
        /// The file's path.
        path: String,
        /// What failed (the OS error).
        message: String,
    },
    /// The file exists but is not a limiter table of this version and capacity.
    #[error("limiter table {path} has the wrong layout: {message}")]
    Layout {
        /// The file's path.
        path: String,
        /// What does not match.
        message: String,
    },
    /// This CPU has no lock-free 128-bit compare-and-swap, which the shared table needs.
    #[error("shared limiter table unsupported on this machine: {0}")]
    Unsupported(String),
}

/// Errors of setting up a stream relay ([`crate::relay::StreamRelay`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// A protocol name that is not `openai.chat`, `anthropic.messages` or `openai.responses`.
    #[error(
        "unknown stream protocol {0:?}: expected \"openai.chat\", \"anthropic.messages\" or \"openai.responses\""
    )]
    UnknownProtocol(String),
    /// A pair of protocols the relay does not translate.
    #[error("unsupported stream relay {from} -> {to}")]
    UnsupportedPair {
        /// The upstream's protocol.
        from: &'static str,
        /// The client's protocol.
        to: &'static str,
    },
}

/// A guardrail rule that does not compile ([`crate::scan::Scanner::new`]): a bad regex (of the rule or of
/// its allowlist), a secret group the regex does not have, a duplicate id, a bad entropy or length bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {id:?} (index {index}): {message}")]
pub struct RuleError {
    /// The rule's position in the list given to the scanner.
    pub index: usize,
    /// The rule's id.
    pub id: String,
    /// What is wrong (the regex error, verbatim, for a bad regex).
    pub message: String,
}

/// Errors of scanning with a guardrail policy ([`crate::scan`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// A policy's action bytes do not match the scanner's rules.
    #[error("invalid guardrail actions: {0}")]
    InvalidActions(String),
    /// A request body given to `scan_json` is not a JSON document (or nests deeper than the bound).
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
}

/// A JSON schema that cannot be used ([`crate::schema::JsonSchema::new`]), or an answer it cannot check
/// within the work budget ([`crate::schema::JsonSchema::errors`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The schema's bytes are over [`crate::schema::MAX_SCHEMA_BYTES`].
    #[error("JSON schema of {size} bytes is over the limit of {limit}")]
    TooLarge {
        /// The schema's size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The schema's bytes are not one JSON document (or nest deeper than 128).
    #[error("JSON schema is not JSON: {0}")]
    NotJson(String),
    /// The schema does not compile: not a schema of its draft, a `$ref` that does not resolve
    /// (remote ones never do), a pattern the linear-time engine does not take or that is too large.
    #[error("invalid JSON schema at {pointer:?}: {message}")]
    Invalid {
        /// JSON pointer of the offending place in the schema (`""`: the root).
        pointer: String,
        /// The compiler's message.
        message: String,
    },
    /// Checking this answer would take more evaluations (subschema, value) than its budget: a
    /// schema whose applicators multiply along a deeply nested answer. The answer is not checked.
    #[error("checking the answer against this JSON schema would take over {budget} evaluations")]
    TooCostly {
        /// The answer's budget (a base plus a share per value).
        budget: u64,
    },
}

/// One problem of a routing rule, where it is: `<source>:<line>:<col>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    /// The name of the text the rule came from (a file path, `routing.rules`, `admin`).
    pub origin: String,
    /// 1-based line of the problem in that text.
    pub line: usize,
    /// 1-based column (in characters) of the problem in that line.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.origin, self.line, self.col, self.message
        )
    }
}

/// Errors of the routing rules ([`crate::policy::RoutePolicy`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutePolicyError {
    /// Rules that do not parse, do not validate against the routing schema, or carry a bad `@id` /
    /// `@priority` annotation: one line per problem, `<source>:<line>:<col>: <message>`.
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Rules {
        /// Every problem found, in source order (at least one).
        problems: Vec<RuleProblem>,
    },
    /// A candidate names a deployment id that `deployment` did not return.
    #[error("unknown deployment id {0}")]
    UnknownDeployment(usize),
    /// Facts Cedar refused to make into its request or entities (not expected: every value of the
    /// model is a plain string, integer, boolean or set of strings).
    #[error("routing facts Cedar cannot represent: {0}")]
    Facts(String),
}

/// Errors of the circuit breakers' table ([`crate::circuit`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CircuitError {
    /// A policy setting out of its range (the message names it).
    #[error("invalid circuit policy: {0}")]
    InvalidPolicy(String),
    /// A table capacity of 0, or too large to map.
    #[error("invalid circuit table capacity {0}: expected 1 to 1048576 slots")]
    InvalidCapacity(usize),
    /// Every slot holds another deployment key (slots are never given back: see the module docs).
    #[error("circuit table full: all {0} slots hold a deployment key (raise the capacity)")]
    Full(usize),
    /// A slot number that is not one of the table's.
    #[error("circuit slot {slot} out of range (capacity {capacity})")]
    BadSlot {
        /// The slot asked for.
        slot: usize,
        /// The table's capacity.
        capacity: usize,
    },
    /// The shared table file could not be opened, or is not a circuit table of this layout
    /// (the file's message).
    #[error("{0}")]
    Table(String),
}

impl From<LimitError> for CircuitError {
    /// The shared file's errors (the mapping code is the limiter's, `ratelimit::shm`).
    fn from(error: LimitError) -> Self {
        match error {
            LimitError::InvalidCapacity(capacity) => Self::InvalidCapacity(capacity),
            LimitError::Io { path, message } => {
                Self::Table(format!("circuit table {path}: {message}"))
            }
            LimitError::Layout { path, message } => Self::Table(format!(
                "circuit table {path} has the wrong layout: {message}"
            )),
            LimitError::Unsupported(message) => Self::Table(format!(
                "shared circuit table unsupported on this machine: {message}"
            )),
            LimitError::InvalidRate(message) => Self::InvalidPolicy(message),
        }
    }
}
