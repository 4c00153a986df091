//! Built-in rules for credentials without a vendor format: passwords in connection URLs and
//! generic `password=` / `secret:` / `api_key:` assignments. The secret is the password or the
//! assigned value (capture group 1), never the name, so a redaction keeps `password=`.
use super::super::rule::RuleDef;
use super::{secret, words};

/// The connection-URL and assignment rules.
pub(super) fn rules() -> Vec<RuleDef> {
    vec![
        url_password(
            "database-url-password",
            "password in a PostgreSQL, MySQL, MongoDB, SQL Server, Oracle, CockroachDB or ClickHouse URL",
            r"postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|mssql|sqlserver|oracle|cockroachdb|clickhouse",
            &["postgres", "mysql", "mariadb", "mongodb", "mssql", "sqlserver", "oracle", "cockroachdb", "clickhouse"],
        ),
        url_password("redis-url-password", "password in a Redis URL", r"rediss?", &["redis"]),
        url_password("amqp-url-password", "password in an AMQP (RabbitMQ) URL", r"amqps?", &["amqp"]),
        assignment(
            "generic-password",
            "value assigned to a password, passwd, passphrase or pwd name",
            r"passw(?:or)?d|passphrase|pwd",
            &["passw", "passphrase", "pwd"],
        ),
        assignment("generic-secret", "value assigned to a name containing secret", r"secret", &["secret"]),
        assignment(
            "generic-api-key",
            "value assigned to an api_key, access_key or access/auth/refresh/bearer token name",
            r"api[_.\-]?key|access[_.\-]?key|(?:access|auth|refresh|bearer|api|session|private)[_.\-]?token",
            &["apikey", "api_key", "api-key", "api.key", "accesskey", "access_key", "access-key", "access.key", "token"],
        ),
    ]
}

/// Passwords of connection URLs that are not secrets: documented defaults and placeholders.
const URL_PLACEHOLDERS: &str = r"(?i)^(?:password|passwd|pass|pwd|secret|changeme|changeit|admin|root|postgres|mysql|redis|guest|user|username|test|pw|\*+|x+|\.+|_+|-+|%s|\$[a-z_][a-z0-9_]*|:[a-z_]+)$";

/// The password of a `scheme://user:password@host` URL whose scheme matches `schemes`.
fn url_password(id: &str, description: &str, schemes: &str, keywords: &[&str]) -> RuleDef {
    let regex = format!(
        r"(?i:\b(?:{schemes})(?:\+[a-z0-9]{{1,20}})?)://[0-9A-Za-z\-._~%!$&*+,;=]{{0,64}}:([0-9A-Za-z\-._~%!$&*+,;=:]{{1,128}})@[0-9A-Za-z_\[]"
    );
    RuleDef {
        secret_group: 1,
        allowlist: vec![URL_PLACEHOLDERS.to_owned()],
        stopwords: words(&[
            "example",
            "xxxx",
            "changeme",
            "your",
            "placeholder",
            "redacted",
        ]),
        ..secret(id, description, &regex, keywords)
    }
}

/// Assigned values that are code or configuration references, not secrets.
const ASSIGNMENT_ALLOWLIST: [&str; 7] = [
    // attribute chains: self.password, settings.SECRET_KEY, os.environ
    r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$",
    // names: credentials, secret_value, workload-identity-auth, DB_PASSWORD, userPassword,
    // AsyncAPIKeys, _AzureApiKeyT (a random mixed-case string has capitals in the middle of
    // short lowercase runs, so it is none of these)
    r"^_*[a-z]+(?:[_\-][a-z0-9]+)*$",
    r"^_*[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$",
    r"^_*[A-Z]{0,5}[a-z]{2,}(?:[A-Z]{1,5}[a-z]{2,})*[A-Z]?$",
    // environment references: $DB_PASSWORD, %DB_PASSWORD%
    r"^\$[A-Za-z_][A-Za-z0-9_]*$",
    r"^%[A-Za-z_][A-Za-z0-9_]*%$",
    // type names and keywords
    r"(?i)^(?:none|null|nil|true|false|undefined|required|optional|string|password|passphrase|redacted|hidden|masked|empty|secret|sensitive)$",
];

/// Words that mark an assigned value as a placeholder.
/// (A value containing "password" is a placeholder far more often than a password:
/// `your-password`, `mypassword`, `password123`.)
const ASSIGNMENT_STOPWORDS: [&str; 15] = [
    "password",
    "xxxx",
    "****",
    "...",
    "example",
    "changeme",
    "change_me",
    "change-me",
    "changeit",
    "placeholder",
    "redacted",
    "your_",
    "your-",
    "yourpass",
    "dummy",
];

/// A value of 8 to 128 characters assigned (`=`, `:`, `:=`, `=>`, quoted or not) to a name
/// that matches `names` (case-insensitive, with up to 20 more name characters after it).
fn assignment(id: &str, description: &str, names: &str, keywords: &[&str]) -> RuleDef {
    let regex = format!(
        r#"(?i:{names})[0-9A-Za-z_\-]{{0,20}}\\?["'`]?[ \t]{{0,4}}(?::=|=>|[:=])[ \t]{{0,4}}\\?["'`]?([0-9A-Za-z!#$%*+./:=?@^_~\-]{{8,128}})(?:[\\"'` \t\r\n,;&)\]}}]|$)"#
    );
    RuleDef {
        entropy: Some(3.0),
        secret_group: 1,
        allowlist: words(&ASSIGNMENT_ALLOWLIST),
        stopwords: words(&ASSIGNMENT_STOPWORDS),
        ..secret(id, description, &regex, keywords)
    }
}
