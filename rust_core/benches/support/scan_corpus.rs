//! The guardrail benchmark's corpus: about 1 MB of English prose (common and business words),
//! Python and Rust source (with the `token`, `password`, `api_key`, `SECRET_KEY` names real code
//! has) and JSON chat requests, generated deterministically, with a fake secret or piece of PII
//! (random bodies, not real credentials) every 64 KB; and a typical 2 KB chat request body.
#![allow(dead_code)]

pub const CORPUS_BYTES: usize = 1 << 20;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn alnum(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "system",
    "request",
    "model",
    "answer",
    "question",
    "data",
    "report",
    "team",
    "project",
    "customer",
    "service",
    "account",
    "access",
    "policy",
    "meeting",
    "budget",
    "quarter",
    "release",
    "deploy",
    "server",
    "database",
    "network",
    "user",
    "review",
    "summary",
    "analysis",
    "result",
    "value",
    "process",
    "history",
    "market",
    "growth",
    "research",
    "paper",
    "number",
    "figure",
    "table",
    "section",
    "chapter",
    "example",
    "method",
    "approach",
    "problem",
    "solution",
    "information",
];

fn prose(rng: &mut Rng, out: &mut String) {
    for _ in 0..(3 + rng.below(5)) {
        let len = 8 + rng.below(16);
        for i in 0..len {
            let word = rng.pick(WORDS);
            if i == 0 {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    out.extend(first.to_uppercase());
                    out.push_str(chars.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(word);
            }
            if rng.below(20) == 0 {
                out.push_str(&format!(" {}", rng.below(10_000)));
            }
            if rng.below(12) == 0 {
                out.push(',');
            }
        }
        out.push_str(rng.pick(&[". ", ". ", "? ", "! "]));
    }
    out.push_str("\n\n");
}

const CODE: &[&str] = &[
    "def load_config(path: str) -> Config:\n    with open(path, encoding=\"utf-8\") as f:\n        data = json.load(f)\n    token = data.get(\"token\")\n    return Config(api_key=os.environ[\"API_KEY\"], timeout=data.get(\"timeout\", 30), token=token)\n\n",
    "class Client:\n    def __init__(self, base_url: str, session: Session | None = None) -> None:\n        self.base_url = base_url.rstrip(\"/\")\n        self.session = session or Session()\n\n    def get(self, path: str, **params: object) -> dict[str, object]:\n        response = self.session.get(f\"{self.base_url}/{path}\", params=params, timeout=10)\n        response.raise_for_status()\n        return response.json()\n\n",
    "for index, item in enumerate(items):\n    if item.secret_ref is None:\n        continue\n    result[index] = resolve(item.secret_ref, cache=cache)\n    logger.debug(\"resolved %s in %.2f ms\", item.name, elapsed * 1000)\n\n",
    "pub fn parse_header(line: &str) -> Result<(String, String), ParseError> {\n    let (name, value) = line.split_once(':').ok_or(ParseError::MissingColon)?;\n    Ok((name.trim().to_ascii_lowercase(), value.trim().to_owned()))\n}\n\n",
    "impl Drop for Connection {\n    fn drop(&mut self) {\n        if let Err(error) = self.socket.shutdown(Shutdown::Both) {\n            tracing::warn!(%error, peer = %self.peer, \"shutdown failed\");\n        }\n    }\n}\n\n",
    "    let password_hash = argon2.hash_password(password.as_bytes(), &salt)?.to_string();\n    db.execute(\"UPDATE users SET password_hash = $1 WHERE id = $2\", &[&password_hash, &user_id]).await?;\n\n",
    "SERVER_HOST = \"127.0.0.1\"\nSERVER_PORT = 8080\nDATABASE_URL = os.environ.get(\"DATABASE_URL\", \"sqlite:///local.db\")\nSECRET_KEY = os.environ[\"SECRET_KEY\"]\nALLOWED_HOSTS = [\"localhost\", \"api.internal\"]\n\n",
    "    #[test]\n    fn round_trips_every_value() {\n        for value in [0u64, 1, 255, 65_535, u64::MAX] {\n            assert_eq!(decode(&encode(value)), Some(value));\n        }\n    }\n\n",
];

fn code(rng: &mut Rng, out: &mut String) {
    out.push_str(rng.pick(CODE));
}

fn json(rng: &mut Rng, out: &mut String) {
    let mut question = String::new();
    prose(rng, &mut question);
    let question = serde_json::Value::String(question.trim().to_owned()).to_string();
    out.push_str(&format!(
        "{{\"model\": \"gpt-4o-mini\", \"temperature\": 0.{}, \"messages\": [{{\"role\": \"system\", \"content\": \"You are a helpful assistant for the {} team.\"}}, {{\"role\": \"user\", \"content\": {question}}}], \"tools\": [{{\"type\": \"function\", \"function\": {{\"name\": \"search_docs\", \"parameters\": {{\"type\": \"object\", \"properties\": {{\"query\": {{\"type\": \"string\"}}, \"limit\": {{\"type\": \"integer\"}}}}}}}}}}], \"user\": \"user-{}\"}}\n",
        rng.below(10),
        rng.pick(WORDS),
        rng.below(100_000)
    ));
}

/// One fake secret or piece of PII (random bodies: not real credentials).
fn planted(rng: &mut Rng, out: &mut String) {
    let item = match rng.below(6) {
        0 => format!("export GITHUB_TOKEN=ghp_{}\n", rng.alnum(36)),
        1 => format!(
            "aws_access_key_id = AKIA{}\n",
            rng.alnum(16).to_ascii_uppercase()
        ),
        2 => format!(
            "Contact jane.doe{}@example.org for access.\n",
            rng.below(100)
        ),
        3 => format!("Call +1 415 555 {:04} tomorrow.\n", rng.below(10_000)),
        4 => format!(
            "OPENAI_API_KEY=sk-proj-{}T3BlbkFJ{}\n",
            rng.alnum(20),
            rng.alnum(20)
        ),
        _ => format!("password = \"{}\"\n", rng.alnum(14)),
    };
    out.push_str(&item);
}

pub fn corpus() -> String {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = String::with_capacity(CORPUS_BYTES + 4096);
    let mut next_plant = 0;
    while out.len() < CORPUS_BYTES {
        match rng.below(3) {
            0 => prose(&mut rng, &mut out),
            1 => code(&mut rng, &mut out),
            _ => json(&mut rng, &mut out),
        }
        if out.len() >= next_plant {
            planted(&mut rng, &mut out);
            next_plant += 64 * 1024;
        }
    }
    let mut end = CORPUS_BYTES;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

pub fn request_body() -> Vec<u8> {
    let mut rng = Rng(7);
    let mut text = String::new();
    while text.len() < 1500 {
        prose(&mut rng, &mut text);
    }
    serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
            {"role": "user", "content": text},
            {"role": "assistant", "content": "Sure, which part?"},
            {"role": "user", "content": "The second paragraph, please."}
        ],
        "temperature": 0.2,
        "stream": true
    })
    .to_string()
    .into_bytes()
}
