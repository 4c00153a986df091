"""Nothing in clear downstream (issue 15, item 6): a secret of every built-in kind, and every kind of PII, planted
through the official ``openai`` and ``anthropic`` SDKs, is found nowhere after the gateway.

The real server runs with tracing to a fake OTLP collector, debug logging, the journal in a temporary spool
directory, ``secret`` and ``pii`` redacted and, for a second key, blocked. Each sample is a made-up credential
(new random characters each run, checked against the scanner before use) in its usual surroundings
(``DB_PASSWORD=...``, a PEM block, a connection URL...), placed in every part of a request that carries text:
system prompts, user content (strings and parts), tool-call arguments, tool results, Anthropic ``tool_use`` /
``tool_result`` blocks, Responses instructions and input items, embeddings input, ``user`` fields; streamed and
not. Then every sink is searched for every sample (as is, JSON-escaped once and twice, and a 16-character piece
of a long one): the bytes the fake upstreams received, the gateway's log, every span the collector received,
``/metrics``, the audit trail (admin API, the rows and the raw SQLite files), the usage records and every file
under the gateway's directory (the journal). A crash case SIGKILLs a gateway right after it answered guarded
requests whose records were still only in memory and the journal: the restarted gateway's replayed audit
records list the findings (rule, category, action, path), and still nothing holds a sample.
"""

from __future__ import annotations

import json
import random
import secrets
import sqlite3
import string
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from ferrogate import _core
from tests.e2e.test_traces import Collector
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeUpstream
from tests.support import Gateway

MASTER = "downstream-master-key-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
GUARD = "x-ferrogate-guardrails"
GUARDED = ("secret", "pii")  # the categories every sample belongs to

UPPER_DIGIT = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits
LETTERS = string.ascii_letters
HEX = "0123456789abcdef"
DIGITS = string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
PASSWORD = ALNUM + "!*~"  # valid in a URL's userinfo and in an unquoted assignment

#: ``chars(alphabet, n)``: ``n`` random characters of ``alphabet``.
Chars = Callable[[str, int], str]
#: A sample of a rule: its surroundings (``{}`` where the secret goes) and the secret, from random characters.
Builder = Callable[[Chars], tuple[str, str]]


def _pem(c: Chars, label: str, lines: int, newline: str) -> str:
    body = newline.join(c(B64, 64) for _ in range(lines))
    return f"-----BEGIN {label}-----{newline}{body}{newline}-----END {label}-----"


def _luhn(c: Chars, prefix: str, length: int) -> str:
    """``prefix``, random digits and the Luhn check digit: ``length`` digits."""
    digits = prefix + c(DIGITS, length - len(prefix) - 1)
    total = 0
    for i, d in enumerate(int(x) for x in reversed(digits)):
        total += (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 == 0 else d
    return digits + str((10 - total % 10) % 10)


def _iban(country: str, bban: str) -> str:
    """The IBAN of ``country`` and ``bban`` with the right check digits (mod 97)."""
    rearranged = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(rearranged) % 97:02d}{bban}"


def _grouped(s: str) -> str:
    return " ".join(s[i : i + 4] for i in range(0, len(s), 4))


#: One sample per built-in secret rule (the ideas of rust_core/tests/scan_rules.rs, in Python).
SECRET_SAMPLES: dict[str, Builder] = {
    "aws-access-key-id": lambda c: ("aws_access_key_id = {}\n", "AKIA" + c(UPPER_DIGIT, 16)),
    "aws-secret-access-key": lambda c: ("aws_secret_access_key = {}\n", c(B64, 40)),
    "github-pat": lambda c: ("export GITHUB_TOKEN={}", "ghp_" + c(ALNUM, 36)),
    "github-fine-grained-pat": lambda c: ("token: {}", f"github_pat_{c(ALNUM, 22)}_{c(ALNUM, 59)}"),
    "github-oauth-token": lambda c: ("oauth={}&x=1", "gho_" + c(ALNUM, 36)),
    "github-app-token": lambda c: ("GH_TOKEN={}", "ghu_" + c(ALNUM, 36)),
    "github-refresh-token": lambda c: ("refresh_token={}", "ghr_" + c(ALNUM, 36)),
    "gitlab-token": lambda c: ("PRIVATE-TOKEN: {}\n", "glpat-" + c(ALNUM, 20)),
    "slack-token": lambda c: ("SLACK_BOT_TOKEN={}", f"xoxb-{c(DIGITS, 11)}-{c(DIGITS, 13)}-{c(ALNUM, 24)}"),
    "slack-app-token": lambda c: ("SLACK_APP_TOKEN={}", f"xapp-1-A{c(UPPER_DIGIT, 10)}-{c(DIGITS, 13)}-{c(HEX, 64)}"),
    "slack-webhook-url": lambda c: (
        "curl -X POST {} -d @msg.json",
        f"https://hooks.slack.com/services/T{c(UPPER_DIGIT, 8)}/B{c(UPPER_DIGIT, 10)}/{c(ALNUM, 24)}",
    ),
    "stripe-secret-key": lambda c: ('stripe.api_key = "{}"', "sk_live_" + c(ALNUM, 24)),
    "openai-api-key": lambda c: ("OPENAI_API_KEY={}", f"sk-{c(ALNUM, 20)}T3BlbkFJ{c(ALNUM, 20)}"),
    "anthropic-api-key": lambda c: ("ANTHROPIC_API_KEY={}", f"sk-ant-api03-{c(B64URL, 93)}AA"),
    "gcp-api-key": lambda c: ("https://maps.googleapis.com/maps/api/js?key={}&callback=init", "AIza" + c(B64URL, 35)),
    "gcp-oauth-client-secret": lambda c: ("secret {}\n", "GOCSPX-" + c(ALNUM, 28)),
    "gcp-service-account-key": lambda c: (  # a key file pasted as text: its newlines are JSON escapes
        '{"type": "service_account", "private_key_id": "k1", "private_key": "{}", "client_email": "x"}',
        _pem(c, "PRIVATE KEY", 8, "\\n") + "\\n",
    ),
    "azure-storage-account-key": lambda c: (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={};EndpointSuffix=core.windows.net",
        c(B64, 86) + "==",
    ),
    "azure-shared-access-key": lambda c: (
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={}",
        c(B64, 43) + "=",
    ),
    "azure-sas-token": lambda c: (
        "https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01T00:00:00Z&spr=https"
        "&sig={}",
        f"{c(ALNUM, 40)}%2B{c(ALNUM, 3)}%3D",
    ),
    "npm-token": lambda c: ("//registry.npmjs.org/:_authToken={}\n", "npm_" + c(ALNUM, 36)),
    "pypi-token": lambda c: ("TWINE_PASSWORD={}", "pypi-AgENdGVzdC5weXBpLm9yZw" + c(ALNUM, 80)),
    "twilio-api-key": lambda c: ("TWILIO_API_KEY={}", "SK" + c(HEX, 32)),
    "twilio-auth-token": lambda c: ("TWILIO_AUTH_TOKEN={}\n", c(HEX, 32)),
    "sendgrid-api-key": lambda c: ("SENDGRID_API_KEY={}", f"SG.{c(ALNUM, 22)}.{c(ALNUM + '_', 43)}"),
    "huggingface-token": lambda c: ("HF_TOKEN={}", "hf_" + c(LETTERS, 34)),
    "private-key": lambda c: ("key:\n{}\n", _pem(c, "RSA PRIVATE KEY", 12, "\n")),
    "jwt": lambda c: ("Authorization: Bearer {}\n", f"eyJ{c(B64URL, 33)}.eyJ{c(B64URL, 120)}.{c(B64URL, 43)}"),
    # hosts without a dot: with pii redacted, user@db.internal would be an email overlapping the password
    "database-url-password": lambda c: ("DATABASE_URL=postgresql://app:{}@db-primary:5432/app", c(PASSWORD, 18)),
    "redis-url-password": lambda c: ("REDIS_URL=redis://:{}@cache:6379/0", c(PASSWORD, 18)),
    "amqp-url-password": lambda c: ("BROKER=amqp://app:{}@rabbit:5672/vhost", c(PASSWORD, 18)),
    "generic-password": lambda c: ("DB_PASSWORD={}\n", c(PASSWORD, 18)),
    "generic-secret": lambda c: ("client_secret: {}\n", c(ALNUM, 32)),
    "generic-api-key": lambda c: ("api_key={}&q=1", c(ALNUM, 32)),
}

#: One sample per built-in PII rule.
PII_SAMPLES: dict[str, Builder] = {
    "email": lambda c: ("mail {} today", f"{c(string.ascii_lowercase, 8)}.{c(DIGITS, 4)}@mail.acme-corp.io"),
    "phone-e164": lambda c: ("call {} now", f"+44 20 7946 {c(DIGITS, 4)}"),
    "phone-nanp": lambda c: ("call {} today", f"(415) 555-01{c(DIGITS, 2)}"),
    "phone-national": lambda c: ("Berlin: {}", f"030 {c('123456789', 1)}{c(DIGITS, 7)}"),
    "credit-card": lambda c: ("card {} exp 12/29", _grouped(_luhn(c, "4", 16))),
    "iban": lambda c: ("IBAN: {}", _grouped(_iban("DE", c(DIGITS, 18)))),
    "us-ssn": lambda c: ("SSN: {}", f"{c('12345', 1)}{c(DIGITS, 2)}-{c('123456789', 2)}-{c('123456789', 4)}"),
    "ipv4": lambda c: ("client {} connected", f"81.2.{c('123456789', 1)}{c(DIGITS, 1)}.{c('123456789', 2)}"),
    "ipv6": lambda c: ("peer [{}]:443", f"2a00:1450:4001:{c('123456789abcdef', 3)}::{c(HEX, 3)}e"),
}


@dataclass(frozen=True)
class Sample:
    """A planted secret: its rule, the text that carries it, and the secret itself."""

    rule: str
    text: str
    secret: str

    def needles(self) -> set[bytes]:
        """What must appear nowhere: the secret and, for a long one, a 16-character piece of its middle (a
        partial leak), each as is and JSON-escaped once and twice (a string inside a JSON string)."""
        pieces = [self.secret]
        if len(self.secret) >= 24:
            mid = len(self.secret) // 2
            pieces.append(self.secret[mid - 8 : mid + 8])
        found: set[bytes] = set()
        for piece in pieces:
            once = json.dumps(piece)[1:-1]
            found |= {piece.encode(), once.encode(), json.dumps(once)[1:-1].encode()}
        return found


SCANNER = _core.Scanner(_core.Scanner.builtin_rules())
#: What the gateway does for the first key (secret and pii redacted) and for the second (blocked).
REDACT = SCANNER.policy(bytes(2 if c in GUARDED else 0 for c in SCANNER.categories))
BLOCK = SCANNER.policy(bytes(3 if c in GUARDED else 0 for c in SCANNER.categories))


def builtin_ids(category: str) -> set[str]:
    return {i for i, c in zip(SCANNER.rule_ids, SCANNER.categories, strict=True) if c == category}


def chars(rng: random.Random) -> Chars:
    """``chars(alphabet, n)`` drawing from ``rng``."""
    return lambda alphabet, n: "".join(rng.choice(alphabet) for _ in range(n))


def make_samples() -> list[Sample]:
    """One sample of every rule of :data:`SECRET_SAMPLES` and :data:`PII_SAMPLES`, each checked: found alone by
    its own rule, with the span of its secret (random characters may hit an allowlist: then new ones)."""
    made: list[Sample] = []
    for rule, build in {**SECRET_SAMPLES, **PII_SAMPLES}.items():
        for _ in range(20):
            template, secret = build(chars(random.Random(secrets.randbits(64))))
            text = template.replace("{}", secret)
            start = text.encode().find(secret.encode())
            result = REDACT.scan_text(text)
            if result is not None and [(f[0], f[4], f[5]) for f in result.findings] == [
                (rule, start, start + len(secret.encode()))
            ]:
                made.append(Sample(rule, text, secret))
                break
        else:
            pytest.fail(f"no valid sample of {rule}: its sample builder no longer matches the rule")
    return made


def test_every_builtin_secret_and_pii_rule_has_a_sample() -> None:
    """A new built-in rule needs a sample here, or the search below would not cover it."""
    assert set(SECRET_SAMPLES) == builtin_ids("secret")
    assert set(PII_SAMPLES) == builtin_ids("pii")


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    assert set(SECRET_SAMPLES) == builtin_ids("secret"), "a built-in secret rule has no sample"
    return make_samples()


# --- the gateway ------------------------------------------------------------------------------------------------


def config(claude: FakeAnthropic, upstream: FakeUpstream, spool: Path, extra: str = "") -> str:
    return f"""
server: {{spool_dir: "{spool}"}}
{extra}
guardrails:
  responses: true
  actions: {{secret: redact, pii: redact}}
upstreams:
  - {{name: claude, provider: anthropic, base_url: "{claude.base_url}/v1", api_key: sk-ant-fake}}
  - {{name: fake, provider: openai, base_url: "{upstream.base_url}", api_key: sk-fake-upstream-key}}
  - {{name: fake-native, provider: openai, base_url: "{upstream.base_url}", responses: true}}
model_groups:
  - {{name: gpt-echo, deployments: [{{upstream: fake, model: echo}}]}}
  - {{name: gpt-native, deployments: [{{upstream: fake-native, model: echo}}]}}
  - {{name: embed, deployments: [{{upstream: fake, model: embed}}]}}
  - {{name: claude-echo, deployments: [{{upstream: claude, model: claude-echo}}]}}
  - {{name: claude-tool, deployments: [{{upstream: claude, model: claude-tool}}]}}
"""


def admin(gw: Gateway, method: str, path: str, body: Any = None, **params: Any) -> Any:
    resp = httpx.request(method, f"{gw.url}/admin/v1{path}", json=body, params=params, headers=ADMIN, timeout=10)
    assert resp.status_code < 300, resp.text
    return resp.json()


@dataclass
class Setup:
    gw: Gateway
    tmp: Path
    database: Path
    team: str
    redact_key: str
    block_key: str


def start(tmp: Path, text: str, database: Path, env: dict[str, str] | None = None) -> Gateway:
    full = {"FERROGATE_MASTER_KEY": MASTER, "FERROGATE_LOG_LEVEL": "debug", **(env or {})}
    return Gateway(tmp, text, dev=False, env=full, database_url=f"sqlite:///{database}").wait_ready()


def keys(gw: Gateway, tmp: Path, database: Path) -> Setup:
    """A team with two keys: the first gets the configuration's policy (redact), the second blocks."""
    team = admin(gw, "POST", "/teams", {"name": f"downstream-{time.monotonic_ns()}"})["id"]
    redact = admin(gw, "POST", "/keys", {"name": "redact", "team_id": team})
    block = admin(gw, "POST", "/keys", {"name": "block", "team_id": team})
    admin(gw, "PUT", f"/keys/{block['id']}/guardrails", {"actions": {"secret": "block", "pii": "block"}})
    return Setup(gw, tmp, database, team, redact["key"], block["key"])


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


@pytest.fixture(scope="module")
def setup(
    claude: FakeAnthropic, upstream: FakeUpstream, collector: Collector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("downstream")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    gw = start(tmp, config(claude, upstream, tmp / "journal"), tmp / "store.db", env)
    yield keys(gw, tmp, tmp / "store.db")
    gw.stop()


# --- the requests -----------------------------------------------------------------------------------------------


def spread(texts: list[str], slots: int, offset: int) -> list[list[str]]:
    """``texts`` dealt round-robin into ``slots`` lists, starting at slot ``offset``.

    >>> spread(["a", "b", "c"], 2, 1)
    [['b'], ['a', 'c']]
    """
    dealt: list[list[str]] = [[] for _ in range(slots)]
    for i, text in enumerate(texts):
        dealt[(i + offset) % slots].append(text)
    return dealt


def chat_body(texts: list[str], offset: int) -> dict[str, Any]:
    """System parts, user parts, user strings, tool-call arguments, tool results: one text in each string."""
    system, parts, strings, arguments, results = spread(texts, 5, offset)
    calls = [(f"call_{i}", json.dumps({"ref": t}), "ok") for i, t in enumerate(arguments)]
    calls += [(f"call_r{i}", json.dumps({"ref": "r"}), t) for i, t in enumerate(results)]
    blocks = (("system", system), ("user", parts))
    messages: list[Any] = [
        *({"role": role, "content": [{"type": "text", "text": t} for t in part]} for role, part in blocks if part),
        *({"role": "user", "content": t} for t in strings),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": i, "type": "function", "function": {"name": "lookup", "arguments": a}} for i, a, _ in calls
            ],
        },
        *({"role": "tool", "tool_call_id": i, "content": r} for i, _, r in calls),
        {"role": "user", "content": "Summarise."},
    ]
    return {"messages": messages}


def messages_body(texts: list[str], offset: int) -> dict[str, Any]:
    """System blocks, text blocks, tool_use inputs, tool_result strings and tool_result text blocks."""
    system, text, uses, results, blocks = spread(texts, 5, offset)
    calls: list[tuple[str, dict[str, str], Any]] = [(f"toolu_{i}", {"ref": t}, "ok") for i, t in enumerate(uses)]
    calls += [(f"toolu_r{i}", {"ref": "r"}, t) for i, t in enumerate(results)]
    calls += [(f"toolu_b{i}", {"ref": "b"}, [{"type": "text", "text": t}]) for i, t in enumerate(blocks)]
    messages: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": t} for t in ["Look these up.", *text]]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": i, "name": "lookup", "input": a} for i, a, _ in calls],
        },
        {
            "role": "user",
            "content": [
                *({"type": "tool_result", "tool_use_id": i, "content": r} for i, _, r in calls),
                {"type": "text", "text": "Thanks."},
            ],
        },
    ]
    return {"messages": messages, **({"system": [{"type": "text", "text": t} for t in system]} if system else {})}


def responses_body(texts: list[str], offset: int) -> dict[str, Any]:
    """Instructions, input_text parts, message strings, function_call arguments, function_call_output."""
    strings, parts, arguments, outputs = spread(texts[1:], 4, offset)
    calls = [(f"call_{i}", json.dumps({"ref": t}), "ok") for i, t in enumerate(arguments)]
    calls += [(f"call_o{i}", json.dumps({"ref": "o"}), t) for i, t in enumerate(outputs)]
    items: list[Any] = [
        *({"role": "user", "content": t} for t in strings),
        *([{"role": "user", "content": [{"type": "input_text", "text": t} for t in parts]}] if parts else []),
    ]
    for call_id, arguments_text, output in calls:
        items.append({"type": "function_call", "call_id": call_id, "name": "lookup", "arguments": arguments_text})
        items.append({"type": "function_call_output", "call_id": call_id, "output": output})
    return {"instructions": texts[0], "input": items}


LOOKUP: Any = {"type": "object", "properties": {"ref": {"type": "string"}}}
OPENAI_TOOLS: Any = [{"type": "function", "function": {"name": "lookup", "parameters": LOOKUP}}]
ANTHROPIC_TOOLS: Any = [{"name": "lookup", "description": "Look a reference up.", "input_schema": LOOKUP}]
RESPONSES_TOOLS: Any = [{"type": "function", "name": "lookup", "parameters": LOOKUP}]


@dataclass
class Sent:
    """A request as the gateway answered it, and the findings the scanner gives its body (rule, category, action,
    path), what its audit record must list."""

    what: str
    request_id: str
    trace_id: str
    guard: str
    findings: list[tuple[str, str, str, str]]
    upstream: bool = True  # it went upstream: a CLIENT span beside the SERVER span


def expected(policy: _core.GuardPolicy, body: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    result = policy.scan_json(orjson.dumps(body))
    names = {2: "redact", 3: "block"}
    return [(f[0], f[1], names[f[2]], f[3]) for f in result.findings] if result is not None else []


def sent(
    what: str, headers: Mapping[str, str], policy: _core.GuardPolicy, body: dict[str, Any], upstream: bool = True
) -> Sent:
    found = expected(policy, body)
    return Sent(what, headers["x-request-id"], headers["x-trace-id"], headers[GUARD], found, upstream)


def send_redacted(s: Setup, texts: list[str]) -> list[Sent]:
    """Every sample through every ingress with the redacting key, streamed and not; each answer's header and
    status checked."""
    done: list[Sent] = []
    oai = openai.OpenAI(base_url=f"{s.gw.url}/v1", api_key=s.redact_key, max_retries=0)
    ant = anthropic.Anthropic(base_url=s.gw.url, api_key=s.redact_key, max_retries=0)
    with oai, ant:
        for model, stream, offset in (("gpt-echo", False, 0), ("gpt-echo", True, 1), ("claude-echo", False, 2)):
            body: dict[str, Any] = {"model": model, **chat_body(texts, offset), "tools": OPENAI_TOOLS}
            if offset == 0:
                body["user"] = texts[-1]
            raw = oai.chat.completions.with_raw_response.create(**body, stream=stream, max_tokens=32)
            parsed: Any = raw.parse()
            assert list(parsed) if stream else parsed.choices
            done.append(sent(f"chat {model} stream={stream}", raw.headers, REDACT, body))
        for model, stream, offset in (("claude-tool", False, 3), ("claude-echo", True, 4)):
            body = {"model": model, "max_tokens": 64, **messages_body(texts, offset), "tools": ANTHROPIC_TOOLS}
            if not stream:
                body["metadata"] = {"user_id": texts[0]}
            answer = ant.messages.with_raw_response.create(**body, stream=stream)
            parsed = answer.parse()
            assert list(parsed) if stream else parsed.content
            done.append(sent(f"messages {model} stream={stream}", answer.headers, REDACT, body | {"stream": stream}))
        counted = ant.messages.with_raw_response.count_tokens(model="claude-echo", **messages_body(texts, 0))
        assert counted.parse().input_tokens > 0
        counted_body = {"model": "claude-echo", **messages_body(texts, 0)}
        done.append(sent("count_tokens", counted.headers, REDACT, counted_body, upstream=False))  # no CLIENT span
        for model, stream, offset in (("gpt-native", False, 1), ("gpt-echo", True, 2)):
            body = {"model": model, **responses_body(texts, offset), "tools": RESPONSES_TOOLS}
            reply = oai.responses.with_raw_response.create(**body, stream=stream)
            parsed = reply.parse()
            assert list(parsed) if stream else parsed.output_text
            done.append(sent(f"responses {model} stream={stream}", reply.headers, REDACT, body))
        vectors = oai.embeddings.with_raw_response.create(model="embed", input=texts)
        assert len(vectors.parse().data) == len(texts)
        done.append(sent("embeddings", vectors.headers, REDACT, {"model": "embed", "input": texts}))
    for one in done:
        assert one.guard == f"scanned; redacted={len(one.findings)}", (one.what, one.guard)
        assert len(one.findings) >= len(texts), one.what
    return done


def send_model_secret(s: Setup, sample: Sample) -> tuple[list[Sent], list[bytes]]:
    """A secret in the ``model`` field: redacted there too (so no group has that name: 404 naming the redacted
    name), or blocked; either way the audit record's target, the usage record and the log never hold it."""
    body: dict[str, Any] = {"model": f"gpt-echo {sample.text}", "messages": [{"role": "user", "content": "hi"}]}
    done: list[Sent] = []
    bodies: list[bytes] = []
    ways = ((s.redact_key, REDACT, openai.NotFoundError), (s.block_key, BLOCK, openai.BadRequestError))
    for key, policy, refusal in ways:
        with (
            openai.OpenAI(base_url=f"{s.gw.url}/v1", api_key=key, max_retries=0) as oai,
            pytest.raises(refusal) as refused,
        ):
            oai.chat.completions.create(**body)
        response = refused.value.response
        assert response.json()["error"]["param"] == "model"
        what = f"a secret in the model field ({response.status_code})"
        done.append(sent(what, response.headers, policy, body, upstream=False))
        bodies.append(response.content)
    assert [one.findings[0][3] for one in done] == ["model", "model"]
    assert done[0].guard == "scanned; redacted=1" and done[1].guard == "scanned; blocked=1"
    return done, bodies


def blocked_body(text: str, place: int) -> tuple[str, dict[str, Any]]:
    """One text in one of six places: (ingress, body)."""
    if place == 0:
        return "chat", {"model": "gpt-echo", "messages": [{"role": "user", "content": text}]}
    if place == 1:
        return "chat", {"model": "gpt-echo", **chat_body([text], 3), "stream": True}
    if place == 2:
        return "messages", {"model": "claude-echo", "max_tokens": 16, **messages_body([text], 3)}
    if place == 3:
        return "messages", {"model": "claude-tool", "max_tokens": 16, **messages_body([text], 2), "stream": True}
    if place == 4:
        return "responses", {"model": "gpt-native", **responses_body(["Be brief.", text], 3), "stream": True}
    return "embeddings", {"model": "embed", "input": ["plain words", text]}


def send_blocked(s: Setup, samples: list[Sample]) -> tuple[list[Sent], list[bytes]]:
    """Each sample alone with the blocking key, in turn in each of six places: refused with 400 naming its rule and
    path, never its text. Returns the requests and the refusals' bodies."""
    done: list[Sent] = []
    bodies: list[bytes] = []
    oai = openai.OpenAI(base_url=f"{s.gw.url}/v1", api_key=s.block_key, max_retries=0)
    ant = anthropic.Anthropic(base_url=s.gw.url, api_key=s.block_key, max_retries=0)
    with oai, ant:
        for place, sample in enumerate(samples):
            ingress, body = blocked_body(sample.text, place % 6)
            error: openai.APIStatusError | anthropic.APIStatusError
            try:
                if ingress == "chat":
                    oai.chat.completions.create(**body)
                elif ingress == "messages":
                    ant.messages.create(**body)
                elif ingress == "responses":
                    oai.responses.create(**body)
                else:
                    oai.embeddings.create(**body)
            except (openai.BadRequestError, anthropic.BadRequestError) as exc:
                error = exc
            else:
                pytest.fail(f"{sample.rule} in {ingress} (place {place % 6}) was not blocked")
            assert GUARD in error.response.headers, (sample.rule, place, error.response.text)
            one = sent(f"blocked {sample.rule} in {ingress}", error.response.headers, BLOCK, body, upstream=False)
            assert one.guard == "scanned; blocked=1"
            (rule, category, _, path) = one.findings[0]
            message = error.response.json()["error"]["message"]
            assert f"rule '{rule}' ({category}) matched at {path}" in message, message
            done.append(one)
            bodies.append(error.response.content)
    return done, bodies


# --- the search -------------------------------------------------------------------------------------------------


def leaks(samples: list[Sample], haystacks: dict[str, bytes]) -> list[str]:
    """``where: rule`` for each sample found in a haystack."""
    found = []
    for sample in samples:
        needles = sample.needles()
        for where, hay in haystacks.items():
            if any(n in hay for n in needles):
                found.append(f"{where}: {sample.rule}")
    return found


def every_file(root: Path) -> dict[str, bytes]:
    return {f"file {p.relative_to(root)}": p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def store_rows(database: Path) -> dict[str, bytes]:
    """Every row of every table of the SQLite store, by table (the audit trail, the usage records...)."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {f"table {t}": repr(conn.execute(f'SELECT * FROM "{t}"').fetchall()).encode() for t in tables}  # noqa: S608


def audit_records(gw: Gateway, team: str, wanted: set[str], timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """The team's request audit records by event id, once every ``wanted`` one is in the store."""
    deadline = time.monotonic() + timeout
    while True:
        records: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        while True:
            params = {"team_id": team, "kind": "request", "limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = admin(gw, "GET", "/audit", **params)
            records |= {r["event_id"]: r for r in page["data"]}
            cursor = page.get("next_cursor")
            if not cursor:
                break
        if wanted <= set(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def listed(record: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The request findings of an audit record (not the answer's, ``answer:...``)."""
    found = record["data"].get("guardrails") or []
    return [(f["rule"], f["category"], f["action"], f["path"]) for f in found if not f["path"].startswith("answer:")]


def check_audit(records: dict[str, dict[str, Any]], done: list[Sent]) -> None:
    missing = [one.what for one in done if one.request_id not in records]
    assert not missing, f"no audit record of {missing}"
    for one in done:
        assert sorted(listed(records[one.request_id])) == sorted(one.findings), one.what


def test_nothing_in_clear_downstream(
    setup: Setup, samples: list[Sample], upstream: FakeUpstream, claude: FakeAnthropic, collector: Collector
) -> None:
    since, since_claude = len(upstream.requests), len(claude.requests)
    texts = [s.text for s in samples]
    redacted = send_redacted(setup, texts)
    blocked, refusals = send_blocked(setup, samples)
    in_model, refused = send_model_secret(setup, samples[0])
    done = redacted + blocked + in_model
    every_rule = set(SECRET_SAMPLES) | set(PII_SAMPLES)
    assert {f[0] for one in redacted for f in one.findings} >= every_rule, "every rule redacted something"
    # (a service-account key file inside tool-call arguments, JSON in a JSON string, is found as its PEM key)
    blocked_rules = {one.findings[0][0] for one in blocked}
    assert blocked_rules | {"gcp-service-account-key"} >= every_rule, "every rule blocked a request"

    # the upstreams got every redacted request, each with its placeholders, and no blocked one
    got = upstream.requests[since:] + claude.requests[since_claude:]
    assert len(got) == len(redacted)
    assert sum(r["raw"].count(b"[REDACTED:") for r in got) == sum(len(one.findings) for one in redacted)
    haystacks = {f"upstream {r['path']} #{i}": r["raw"] + repr(r["headers"]).encode() for i, r in enumerate(got)}

    records = audit_records(setup.gw, setup.team, {one.request_id for one in done})
    check_audit(records, done)
    haystacks["admin API /audit"] = orjson.dumps(list(records.values()))
    haystacks["admin API /usage"] = orjson.dumps(admin(setup.gw, "GET", "/usage", team_id=setup.team))

    series = 'ferrogate_guardrail_findings_total{action="%s",category="%s",rule="%s"}'
    wanted = {series % (action, category, rule) for one in done for rule, category, action, _ in one.findings}
    deadline = time.monotonic() + 10
    while True:  # the metrics are flushed every second
        metrics = httpx.get(f"{setup.gw.url}/metrics", timeout=10).text
        if all(w in metrics for w in wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [w for w in wanted if w not in metrics] == []
    haystacks["GET /metrics"] = metrics.encode()

    # a SERVER span each, and a CLIENT span for each request that went upstream
    spans = {one.what: collector.trace(one.trace_id, n=2 if one.upstream else 1) for one in done}
    assert all(spans.values()), [w for w, found in spans.items() if not found]
    for what, found in spans.items():
        haystacks[f"spans of {what}"] = b"".join(s.SerializeToString() + str(s).encode() for s in found)
    haystacks["every span received"] = b"".join(s.SerializeToString() for _, s in collector.spans)
    haystacks["refusals sent to the client"] = b"".join(refusals + refused)

    deadline = time.monotonic() + 10
    while True:  # the request log is flushed every interval (observability.logs.RequestLog)
        log = setup.gw.log()
        if all(one.request_id in log for one in done) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(one.request_id in log for one in done), "the request log names every request"
    haystacks["gateway log"] = log.encode()
    rows = store_rows(setup.database)
    assert rows["table usage_records"].count(b"'" + setup.team.encode() + b"'") >= len(done)
    haystacks |= rows
    haystacks |= every_file(setup.tmp)
    assert leaks(samples, haystacks) == []


# --- a crash ----------------------------------------------------------------------------------------------------


def test_a_crash_keeps_the_findings_and_no_secret(
    samples: list[Sample], upstream: FakeUpstream, claude: FakeAnthropic, tmp_path: Path
) -> None:
    """Records waiting in memory (60 s write rounds) and the journal when the gateway is SIGKILLed right after its
    answers; the restarted gateway replays the journal: every audit record, with its findings, and no secret."""
    spool, database = tmp_path / "journal", tmp_path / "store.db"
    slow = "audit: {interval_s: 60}\nmetering: {interval_s: 60}"
    gw = start(tmp_path, config(claude, upstream, spool, slow), database)
    try:
        s = keys(gw, tmp_path, database)
        texts = [sample.text for sample in samples]
        with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=s.redact_key, max_retries=0) as oai:
            body: dict[str, Any] = {"model": "gpt-echo", **chat_body(texts, 0), "tools": OPENAI_TOOLS}
            raw = oai.chat.completions.with_raw_response.create(**body, stream=True)
            assert list(raw.parse())
            done = [Sent("chat", raw.headers["x-request-id"], "", raw.headers[GUARD], expected(REDACT, body))]
        with anthropic.Anthropic(base_url=gw.url, api_key=s.block_key, max_retries=0) as ant:
            body = {"model": "claude-tool", "max_tokens": 16, **messages_body(texts[:3], 1)}
            with pytest.raises(anthropic.BadRequestError) as refused:
                ant.messages.create(**body)
            headers = refused.value.response.headers
            done.append(Sent("blocked", headers["x-request-id"], "", headers[GUARD], expected(BLOCK, body)))
    finally:
        gw.kill()  # right after the answers: the audit and usage writers had not stored them
    journal = every_file(spool)
    assert journal, "the killed gateway left its journal"
    lines = b"".join(journal.values())
    assert all(one.request_id.encode() in lines for one in done)
    assert all(f[0].encode() in lines for one in done for f in one.findings), "the findings ride in the journal"
    assert leaks(samples, journal) == []
    stored = b"".join(store_rows(database).values())
    assert not [one.what for one in done if one.request_id.encode() in stored], "only in memory and the journal"

    restarted = start(tmp_path, config(claude, upstream, spool), database)
    try:
        records = audit_records(restarted, s.team, {one.request_id for one in done})
        check_audit(records, done)
        assert records[done[1].request_id]["data"]["error"] == "content_policy_violation"
        haystacks = {"admin API /audit": orjson.dumps(list(records.values())), "gateway log": restarted.log().encode()}
        haystacks |= store_rows(database)
    finally:
        assert restarted.stop() == 0
    haystacks |= every_file(tmp_path)
    assert leaks(samples, haystacks) == []
