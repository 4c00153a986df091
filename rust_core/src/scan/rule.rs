//! A scanner rule as data: [`RuleDef`], its [`Category`] and its [`Validator`].
//!
//! A `RuleDef` is owned plain data (built-in rules, user rules from the config, Gitleaks rules);
//! [`crate::scan::Scanner::new`] compiles a list of them once.

/// What kind of finding a rule reports; actions are configured per category or per rule id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Credentials: API keys, tokens, private keys, passwords.
    Secret,
    /// Personal data: e-mail addresses, phone numbers, card numbers, IBANs, ...
    Pii,
    /// Prompt-injection phrases and deny patterns.
    Injection,
    /// Rules users add.
    Custom,
}

impl Category {
    /// Every category, in the order of their names.
    pub const ALL: [Category; 4] = [
        Category::Secret,
        Category::Pii,
        Category::Injection,
        Category::Custom,
    ];

    /// The category's name: `"secret"`, `"pii"`, `"injection"` or `"custom"`.
    pub fn name(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::Pii => "pii",
            Category::Injection => "injection",
            Category::Custom => "custom",
        }
    }

    /// The category of a name (as [`Category::name`] gives it), `None` for any other.
    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// A check of a candidate secret beyond its regex; a candidate that fails it is not a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Validator {
    /// No check.
    #[default]
    None,
    /// The Luhn checksum of the digits (card numbers); spaces and dashes are ignored.
    Luhn,
    /// The ISO 13616 mod-97 check of an IBAN; spaces are ignored.
    Iban,
}

impl Validator {
    /// Every validator.
    pub const ALL: [Validator; 3] = [Validator::None, Validator::Luhn, Validator::Iban];

    /// The validator's name: `"none"`, `"luhn"` or `"iban"`.
    pub fn name(self) -> &'static str {
        match self {
            Validator::None => "none",
            Validator::Luhn => "luhn",
            Validator::Iban => "iban",
        }
    }

    /// The validator of a name (as [`Validator::name`] gives it), `None` for any other.
    pub fn from_name(name: &str) -> Option<Validator> {
        Validator::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// One rule: a regex, with the prefilter keywords and the checks that turn a match into a finding.
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// Unique kebab-case id, e.g. `"github-pat"`; it names the rule in findings and redactions.
    pub id: String,
    /// The rule's category.
    pub category: Category,
    /// One line saying what the rule finds.
    pub description: String,
    /// The pattern, in Rust `regex` syntax.
    pub regex: String,
    /// Case-insensitive literals, one of which every match contains; empty: the regex always runs.
    pub keywords: Vec<String>,
    /// Minimum Shannon entropy (bits per char) of the secret; `None`: no entropy check.
    pub entropy: Option<f64>,
    /// The capture group that is the secret; 0 is the whole match.
    pub secret_group: usize,
    /// Regexes: a secret matching any of them is not a finding (placeholders, examples).
    pub allowlist: Vec<String>,
    /// Words: a secret containing any of them (case-insensitive) is not a finding.
    pub stopwords: Vec<String>,
    /// A checksum the secret must pass.
    pub validator: Validator,
    /// Bound on a match's length in bytes (stream hold-back); `None`: derived from the regex,
    /// capped at 4096 when the regex is unbounded.
    pub max_len: Option<usize>,
}

impl RuleDef {
    /// A rule with the given id, category and regex, and every other field empty.
    pub fn new(id: impl Into<String>, category: Category, regex: impl Into<String>) -> RuleDef {
        RuleDef {
            id: id.into(),
            category,
            description: String::new(),
            regex: regex.into(),
            keywords: Vec::new(),
            entropy: None,
            secret_group: 0,
            allowlist: Vec::new(),
            stopwords: Vec::new(),
            validator: Validator::None,
            max_len: None,
        }
    }
}
