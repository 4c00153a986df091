//! Built-in rules for credentials of a known format: cloud and SaaS tokens, private keys, JWTs.
//!
//! Formats are the vendors' documented prefixes and lengths (GitHub `ghp_`/`gho_`/`ghu_`/`ghs_`/
//! `ghr_`/`github_pat_`, Slack `xox?-`, Stripe `sk_live_`, OpenAI's `T3BlbkFJ` marker, ...).
use super::super::rule::RuleDef;
use super::{secret, token, words, PLACEHOLDERS};

/// The known-format credential rules, most specific first.
pub(super) fn rules() -> Vec<RuleDef> {
    let mut rules = vec![
        RuleDef {
            entropy: Some(3.0),
            ..token(
                "aws-access-key-id",
                "AWS access key id (AKIA long-term, ASIA temporary)",
                r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}",
                &["akia", "asia", "abia", "acca"],
            )
        },
        RuleDef {
            entropy: Some(4.0),
            secret_group: 1,
            stopwords: words(&PLACEHOLDERS),
            ..secret(
                "aws-secret-access-key",
                "AWS secret access key assigned to an aws_secret_access_key-like name",
                r#"(?i:aws[_.\-]?secret(?:[_.\-]?access)?(?:[_.\-]?key)?|secret[_.\-]?access[_.\-]?key)[A-Za-z_]{0,10}["']?[ \t]{0,4}(?::=|=>|[:=])[ \t]{0,4}["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
                &["aws", "secret"],
            )
        },
        RuleDef {
            entropy: Some(3.0),
            ..token("github-pat", "GitHub personal access token (classic)", r"ghp_[0-9A-Za-z]{36}", &["ghp_"])
        },
        RuleDef {
            entropy: Some(3.0),
            ..token(
                "github-fine-grained-pat",
                "GitHub fine-grained personal access token",
                r"github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59}",
                &["github_pat_"],
            )
        },
        RuleDef {
            entropy: Some(3.0),
            ..token("github-oauth-token", "GitHub OAuth access token", r"gho_[0-9A-Za-z]{36}", &["gho_"])
        },
        RuleDef {
            entropy: Some(3.0),
            ..token(
                "github-app-token",
                "GitHub App user-to-server or installation token (also the longer JWT-shaped ghs_)",
                r"(?:ghu|ghs)_[0-9A-Za-z]{36}(?:[0-9A-Za-z_.]{0,600}[0-9A-Za-z_])?",
                &["ghu_", "ghs_"],
            )
        },
        RuleDef {
            entropy: Some(3.0),
            ..token("github-refresh-token", "GitHub App refresh token", r"ghr_[0-9A-Za-z]{36}", &["ghr_"])
        },
        RuleDef {
            entropy: Some(3.0),
            ..token(
                "gitlab-token",
                "GitLab personal, deploy, runner, trigger, feed, OAuth or agent token",
                r"gl(?:pat|dt|rt|ptt|ft|imt|agent|oas|cbt|soat|ffct|wt)-[0-9A-Za-z_\-]{20,300}(?:\.[0-9a-z]{2}\.[0-9a-z]{1,16})?",
                &[
                    "glpat-", "gldt-", "glrt-", "glptt-", "glft-", "glimt-", "glagent-", "gloas-", "glcbt-",
                    "glsoat-", "glffct-", "glwt-",
                ],
            )
        },
        token(
            "slack-token",
            "Slack bot, user, workspace, legacy or configuration token",
            r"xox[abeoprs]-(?:[0-9]{1,2}-)?[0-9]{6,16}-[0-9A-Za-z]{6,64}(?:-[0-9A-Za-z]{6,64}){0,3}|xoxe(?:\.xox[bp])?-[0-9]-[0-9A-Za-z]{100,300}",
            &["xox"],
        ),
        token(
            "slack-app-token",
            "Slack app-level token",
            r"xapp-[0-9]-[0-9A-Z]{8,14}-[0-9]{8,16}-[0-9a-f]{32,80}",
            &["xapp-"],
        ),
        token(
            "slack-webhook-url",
            "Slack incoming webhook, workflow or trigger URL",
            r"https://hooks\.slack\.com/(?:services/T[0-9A-Z]{8,12}/B[0-9A-Z]{8,12}/[0-9A-Za-z]{24}|(?:workflows|triggers)/T[0-9A-Z]{8,12}/[0-9A-Za-z]{8,24}(?:/[0-9A-Za-z]{8,40}){1,2})",
            &["hooks.slack.com"],
        ),
        RuleDef {
            entropy: Some(3.0),
            ..token(
                "stripe-secret-key",
                "Stripe secret or restricted API key (live or test mode)",
                r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{20,247}",
                &["sk_live_", "rk_live_", "sk_test_", "rk_test_"],
            )
        },
        RuleDef {
            entropy: Some(3.5),
            ..token(
                "openai-api-key",
                "OpenAI API key (user, project, service account or admin)",
                r"sk-(?:proj-|svcacct-|admin-)?[0-9A-Za-z_\-]{16,250}T3BlbkFJ[0-9A-Za-z_\-]{16,250}",
                &["t3blbkfj"],
            )
        },
        RuleDef {
            entropy: Some(3.5),
            ..token(
                "anthropic-api-key",
                "Anthropic API, admin or OAuth key",
                r"sk-ant-(?:api|admin|oat|ort)[0-9]{2}-[0-9A-Za-z_\-]{32,160}",
                &["sk-ant-"],
            )
        },
        RuleDef {
            entropy: Some(3.5),
            ..token("gcp-api-key", "Google API key", r"AIza[0-9A-Za-z_\-]{35}", &["aiza"])
        },
        RuleDef {
            entropy: Some(3.0),
            ..token(
                "gcp-oauth-client-secret",
                "Google OAuth client secret",
                r"GOCSPX-[0-9A-Za-z_\-]{28}",
                &["gocspx-"],
            )
        },
        RuleDef {
            secret_group: 1,
            ..secret(
                "gcp-service-account-key",
                "private key of a Google service-account key file (its JSON text, with \\n escapes)",
                r#""private_key"[ \t]{0,4}:[ \t]{0,4}"(-----BEGIN (?:RSA )?PRIVATE KEY-----(?:[A-Za-z0-9+/=\r\n]|\\n|\\r){64,}-----END (?:RSA )?PRIVATE KEY-----(?:\\n)?)""#,
                &["private_key"],
            )
        },
        RuleDef {
            entropy: Some(4.5),
            secret_group: 1,
            ..secret(
                "azure-storage-account-key",
                "Azure storage account key, alone or in a connection string (AccountKey=)",
                r#"(?i:accountkey|azure[_.\-]?storage[_.\-]?(?:account[_.\-]?)?key|storage[_.\-]?account[_.\-]?key)["']?[ \t]{0,4}[:=][ \t]{0,4}["']?([A-Za-z0-9+/]{86}==)(?:[^A-Za-z0-9+/=]|$)"#,
                &["accountkey", "storage"],
            )
        },
        RuleDef {
            entropy: Some(4.0),
            secret_group: 1,
            ..secret(
                "azure-shared-access-key",
                "Azure Service Bus, Event Hubs or IoT Hub connection string key (SharedAccessKey=)",
                r"\b(?i:sharedaccesskey)=([A-Za-z0-9+/]{42,43}=)(?:[^A-Za-z0-9+/=]|$)",
                &["sharedaccesskey="],
            )
        },
        RuleDef {
            entropy: Some(4.0),
            secret_group: 1,
            ..secret(
                "azure-sas-token",
                "signature of an Azure shared access signature URL (sig=)",
                r"[?&](?i:sig)=([0-9A-Za-z%+/]{43,120})(?:[^0-9A-Za-z%+/]|$)",
                &["sig="],
            )
        },
        RuleDef {
            entropy: Some(3.5),
            ..token("npm-token", "npm access token", r"npm_[0-9A-Za-z]{36}", &["npm_"])
        },
        token(
            "pypi-token",
            "PyPI or TestPyPI upload token",
            r"pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[0-9A-Za-z_\-]{50,400}",
            &["pypi-age"],
        ),
        RuleDef {
            entropy: Some(3.0),
            ..token(
                "twilio-api-key",
                "Twilio API key SID",
                r"SK[0-9a-f]{32}",
                &[
                    "sk0", "sk1", "sk2", "sk3", "sk4", "sk5", "sk6", "sk7", "sk8", "sk9", "ska", "skb", "skc",
                    "skd", "ske", "skf",
                ],
            )
        },
        RuleDef {
            entropy: Some(3.0),
            secret_group: 1,
            stopwords: words(&PLACEHOLDERS),
            ..secret(
                "twilio-auth-token",
                "Twilio auth token or API secret assigned to a twilio-named setting",
                r#"(?i:twilio[a-z0-9_.\-]{0,30}(?:token|secret))["']?[ \t]{0,4}(?::=|=>|[:=])[ \t]{0,4}["']?([0-9A-Za-z]{32})\b"#,
                &["twilio"],
            )
        },
        RuleDef {
            entropy: Some(3.5),
            ..token(
                "sendgrid-api-key",
                "SendGrid API key",
                r"SG\.[0-9A-Za-z_\-]{22}\.[0-9A-Za-z_\-]{43}",
                &["sg."],
            )
        },
        RuleDef {
            entropy: Some(3.5),
            ..token(
                "huggingface-token",
                "Hugging Face user or organization access token",
                r"(?:hf|api_org)_[A-Za-z]{34}",
                &["hf_", "api_org_"],
            )
        },
    ];
    rules.extend([private_key(), jwt()]);
    rules
}

/// A PEM (or PGP armoured) private key block: RSA, EC, DSA, OpenSSH, PKCS#8, encrypted, with
/// real newlines or `\n` escapes. The body is unbounded; the scanner's 4096-byte cap on a match
/// (for streams) holds the block of a 4096-bit RSA key.
fn private_key() -> RuleDef {
    secret(
        "private-key",
        "PEM or PGP private key block",
        r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----(?:[ \t\r\n\\rn]{0,8}[A-Za-z\-]{1,20}: [^\r\n\\]{1,100}){0,4}[A-Za-z0-9+/=\t\r\n \\]{16,}-----END[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----",
        &["private key"],
    )
}

/// A JSON Web Token: base64url JSON header and payload (both start `eyJ`) and a signature.
fn jwt() -> RuleDef {
    RuleDef {
        secret_group: 1,
        // The jwt.io documentation example (HS256 over a "John Doe" payload) is no one's token.
        allowlist: words(&[r"\.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c$"]),
        ..secret(
            "jwt",
            "JSON Web Token (signed)",
            &format!(
                r"\b(eyJ[0-9A-Za-z_\-]{{8,}}\.eyJ[0-9A-Za-z_\-]{{8,}}\.[0-9A-Za-z_\-]{{16,}}){}",
                super::TOKEN_END
            ),
            &["eyj"],
        )
    }
}
