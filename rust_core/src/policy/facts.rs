//! What a routing decision is made from (a request's facts, a deployment's fixed attributes, a
//! candidate's observed health) and what it answers ([`Verdict`]).

/// The request's facts: the principal's and the context's attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    /// The key's team id (`""`: none).
    pub team: &'a str,
    /// The key's id (also the principal's entity id).
    pub key: &'a str,
    /// The end user the request names (`""`: none).
    pub user: &'a str,
    /// The request's data classification (`""`: none).
    pub classification: &'a str,
    /// The latency SLA in milliseconds (0: none).
    pub sla_ms: i64,
    /// The budget left on the key's chain, in US cents (-1: no budget).
    pub budget_left_cents: i64,
    /// The model group the request asked for.
    pub model: &'a str,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// The protocol the request came in (`openai`, `anthropic`, ...).
    pub ingress: &'a str,
}

/// A deployment's fixed attributes, given once at registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployment {
    /// The deployment key `<upstream>/<model>` (the resource's entity id).
    pub key: String,
    /// The provider kind (`openai`, `anthropic`, `vllm`, ...).
    pub provider: String,
    /// The upstream's name.
    pub upstream: String,
    /// The upstream model.
    pub model: String,
    /// The model group.
    pub group: String,
    /// The deployment's tags.
    pub tags: Vec<String>,
    /// The price of 1M input tokens, in micro-USD ($2.50 per 1M tokens is 2 500 000).
    pub input_price_micro_usd: i64,
    /// The price of 1M output tokens, in micro-USD.
    pub output_price_micro_usd: i64,
}

/// A candidate of one decision: a registered deployment and its health now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed<'a> {
    /// The id `RoutePolicy::deployment` returned.
    pub deployment: usize,
    /// The EWMA of its total latency, in ms (-1: unknown).
    pub latency_ms: i64,
    /// The EWMA of its time to first token, in ms (-1: unknown).
    pub ttft_ms: i64,
    /// The share of failed attempts in the circuit's window, in percent (0 to 100).
    pub error_rate_pct: i64,
    /// The circuit's state: `closed`, `open` or `half_open`.
    pub circuit: &'a str,
    /// The requests in flight on it (every worker of the instance).
    pub in_flight: i64,
}

impl<'a> Observed<'a> {
    /// A healthy candidate with nothing known about it yet (closed circuit, unknown latencies).
    ///
    /// ```
    /// let c = _core::policy::Observed::new(3);
    /// assert_eq!((c.deployment, c.latency_ms, c.circuit), (3, -1, "closed"));
    /// ```
    pub fn new(deployment: usize) -> Self {
        Self {
            deployment,
            latency_ms: -1,
            ttft_ms: -1,
            error_rate_pct: 0,
            circuit: "closed",
            in_flight: 0,
        }
    }
}

/// What the rules say of one candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The candidate's deployment id.
    pub deployment: usize,
    /// False when a `forbid` matched.
    pub eligible: bool,
    /// The sum of the `@priority` of every `permit` that matched (0 when not eligible).
    pub score: i64,
    /// The rules that decided, by index ([`crate::policy::RoutePolicy::ids`]), in source order:
    /// the forbids that matched when not eligible, else the permits that matched.
    pub rules: Vec<usize>,
}
