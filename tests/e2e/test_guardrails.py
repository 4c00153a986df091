"""Guardrails through the real server, with the official SDKs as clients and recording fake upstreams.

A made-up token (``acme_`` and 16 letters or digits: no real credential has that shape, and each run makes a new
one) is put everywhere a request carries text: user, system and tool messages, multi-part text, tool-call
arguments, Anthropic ``tool_use`` / ``tool_result`` blocks, Responses input items, embeddings input; streamed
and not. What the upstream received shows it redacted on every ingress; a block rule refuses the request with
400 ``content_policy_violation`` naming the rule and the path and never the text; the
``x-ferrogate-guardrails`` header says what ran; classification gating picks the cleared deployment or refuses
with 403; the metrics, the audit trail and the gateway's log carry no token.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import LEAK, WORDS, FakeUpstream
from tests.support import Gateway, admin

MASTER = "guardrails-master-key-0123456789"
#: Redacted wherever it is found (rule ``acme-token``); a new one each run.
TOKEN = "acme_" + secrets.token_hex(8)
#: Blocks the request (rule ``blk-token``).
BLOCKED = "blk_" + secrets.token_hex(8)
#: Logged only (rule ``ticket``).
TICKET = "TCK-" + str(secrets.randbelow(900_000) + 100_000)
REDACTED = "[REDACTED:acme-token]"
GUARD = "x-ferrogate-guardrails"
LOOKUP: Any = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a reference up.",
        "parameters": {"type": "object", "properties": {"ref": {"type": "string"}}},
    },
}
LOOKUP_ANTHROPIC: Any = {
    "name": "lookup",
    "description": "Look a reference up.",
    "input_schema": LOOKUP["function"]["parameters"],
}


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, claude: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = f"""
guardrails:
  responses: true
  rules:
    - {{id: acme-token, regex: 'acme_[a-z0-9]{{16}}', keywords: [acme_], action: redact}}
    - {{id: blk-token, regex: 'blk_[a-z0-9]{{16}}', keywords: [blk_]}}
    - {{id: ticket, regex: 'TCK-[0-9]{{6}}', keywords: [tck-], action: log}}
  deny_patterns:
    - {{id: codename, regex: '(?i)project\\s+bluebird'}}
upstreams:
  - name: claude
    provider: anthropic
    base_url: {claude.base_url}/v1
    api_key: sk-ant-fake
  - name: fake
    provider: openai
    base_url: http://127.0.0.1:{upstream.port}/v1
    api_key: sk-fake-upstream-key
  - name: fake-native
    provider: openai
    base_url: http://127.0.0.1:{upstream.port}/v1
    responses: true
model_groups:
  - name: gpt-echo
    deployments: [{{upstream: fake, model: echo}}]
  - name: gpt-native
    deployments: [{{upstream: fake-native, model: echo}}]
  - name: gpt-leak
    deployments: [{{upstream: fake, model: leak}}]
  - name: embed
    deployments: [{{upstream: fake, model: embed}}]
  - name: claude-echo
    deployments: [{{upstream: claude, model: claude-echo}}]
  - name: claude-tool
    deployments: [{{upstream: claude, model: claude-tool}}]
  - name: public-only
    deployments: [{{upstream: fake, model: echo, clearance: public}}]
  - name: tiered
    deployments:
      - {{upstream: fake, model: echo-internal, clearance: internal}}
      - {{upstream: fake, model: echo-restricted}}
"""
    tmp: Path = tmp_path_factory.mktemp("guardrails")
    gateway = Gateway(tmp, config, dev=False, env={"FERROGATE_MASTER_KEY": MASTER}).wait_ready()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def key(gw: Gateway) -> dict[str, Any]:
    team = admin(gw, "POST", "/teams", {"name": f"guarded-{time.monotonic_ns()}"})
    found: dict[str, Any] = admin(gw, "POST", "/keys", {"name": "k", "team_id": team["id"]})
    found["team"] = team
    return found


@pytest.fixture(scope="module")
def oai(key: dict[str, Any], gw: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def ant(key: dict[str, Any], gw: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=key["key"], max_retries=0) as client:
        yield client


def received(fake: FakeUpstream | FakeAnthropic, since: int) -> list[dict[str, Any]]:
    """The requests the fake received after the first ``since``."""
    return fake.requests[since:]


def only_redacted(sent: dict[str, Any], count: int) -> None:
    """The upstream saw the token ``count`` times, redacted each time, never in clear."""
    raw: bytes = sent["raw"]
    assert TOKEN.encode() not in raw
    assert raw.count(REDACTED.encode()) == count, raw


def chat_messages(secret: str) -> Any:
    return [
        {"role": "system", "content": f"Internal reference {secret} applies."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "First part."}, {"type": "text", "text": f"ref {secret}"}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": json.dumps({"ref": secret})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": f"found {secret} in the index"},
        {"role": "user", "content": f"and what of {secret} now?"},
    ]


# --- redaction on every ingress ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_chat_every_message_part_is_redacted(oai: openai.OpenAI, upstream: FakeUpstream, stream: bool) -> None:
    since = len(upstream.requests)
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-echo", messages=chat_messages(TOKEN), tools=[LOOKUP], stream=stream, max_tokens=50
    )
    assert raw.headers[GUARD] == "scanned; redacted=5"
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)  # type: ignore[union-attr]
    else:
        text = raw.parse().choices[0].message.content or ""  # type: ignore[union-attr]
    assert text == ("".join(WORDS) if stream else "model=echo")
    (sent,) = received(upstream, since)
    only_redacted(sent, 5)
    messages = sent["body"]["messages"]
    assert messages[0]["content"] == f"Internal reference {REDACTED} applies."
    assert messages[1]["content"][1]["text"] == f"ref {REDACTED}"
    assert json.loads(messages[2]["tool_calls"][0]["function"]["arguments"]) == {"ref": REDACTED}
    assert messages[3]["content"] == f"found {REDACTED} in the index"
    assert sent["body"]["stream"] is stream


def test_chat_translated_for_an_anthropic_upstream(oai: openai.OpenAI, claude: FakeAnthropic) -> None:
    since = len(claude.requests)
    raw = oai.chat.completions.with_raw_response.create(
        model="claude-echo", messages=chat_messages(TOKEN), tools=[LOOKUP], max_tokens=50
    )
    assert raw.headers[GUARD] == "scanned; redacted=5"
    (sent,) = received(claude, since)
    only_redacted(sent, 5)  # the translation starts from the redacted request
    assert REDACTED in json.dumps(sent["body"]["system"])


@pytest.mark.parametrize("stream", [False, True])
def test_messages_tool_use_and_tool_result_blocks(
    ant: anthropic.Anthropic, claude: FakeAnthropic, stream: bool
) -> None:
    since = len(claude.requests)
    messages: Any = [
        {"role": "user", "content": [{"type": "text", "text": f"look up {TOKEN}"}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"ref": TOKEN}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": f"got {TOKEN}"}],
                },
                {"type": "text", "text": "Thanks."},
            ],
        },
    ]
    kwargs: Any = {"model": "claude-tool", "max_tokens": 64, "system": f"Note {TOKEN}", "messages": messages}
    if stream:
        with ant.messages.stream(**kwargs, tools=[LOOKUP_ANTHROPIC]) as events:
            answer = events.get_final_message()
            header = events.response.headers[GUARD]
    else:
        raw = ant.messages.with_raw_response.create(**kwargs, tools=[LOOKUP_ANTHROPIC])
        header = raw.headers[GUARD]
        answer = raw.parse()
    assert header == "scanned; redacted=4"
    (sent,) = received(claude, since)
    only_redacted(sent, 4)
    body = sent["body"]
    assert body["system"] == f"Note {REDACTED}"
    assert body["messages"][1]["content"][0]["input"] == {"ref": REDACTED}
    assert body["messages"][2]["content"][0]["content"][0]["text"] == f"got {REDACTED}"
    # the fake answers with the tool result it was given: the client sees what the upstream saw
    text = "".join(b.text for b in answer.content if b.type == "text")
    assert TOKEN not in text


def test_count_tokens_body_is_redacted(ant: anthropic.Anthropic, claude: FakeAnthropic) -> None:
    since = len(claude.requests)
    counted = ant.messages.count_tokens(model="claude-echo", messages=[{"role": "user", "content": f"count {TOKEN}"}])
    assert counted.input_tokens > 0
    (sent,) = received(claude, since)
    assert sent["path"] == "/v1/messages/count_tokens"
    only_redacted(sent, 1)


def responses_input(secret: str) -> Any:
    return [
        {"role": "user", "content": [{"type": "input_text", "text": f"look up {secret}"}]},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": json.dumps({"ref": secret})},
        {"type": "function_call_output", "call_id": "call_1", "output": f"found {secret}"},
    ]


@pytest.mark.parametrize("model", ["gpt-echo", "gpt-native"])
@pytest.mark.parametrize("stream", [False, True])
def test_responses_input_items(oai: openai.OpenAI, upstream: FakeUpstream, model: str, stream: bool) -> None:
    since = len(upstream.requests)
    tool: Any = {"type": "function", "name": "lookup", "parameters": LOOKUP["function"]["parameters"]}
    raw = oai.responses.with_raw_response.create(
        model=model, instructions=f"Mind {TOKEN}.", input=responses_input(TOKEN), tools=[tool], stream=stream
    )
    assert raw.headers[GUARD] == "scanned; redacted=4"
    if stream:
        assert [e.type for e in raw.parse()][-1] == "response.completed"  # type: ignore[union-attr]
    else:
        assert raw.parse().output_text  # type: ignore[union-attr]
    (sent,) = received(upstream, since)
    assert sent["path"] == ("/v1/responses" if model == "gpt-native" else "/v1/chat/completions")
    only_redacted(sent, 4)


def test_embeddings_input(oai: openai.OpenAI, upstream: FakeUpstream) -> None:
    since = len(upstream.requests)
    raw = oai.embeddings.with_raw_response.create(model="embed", input=["plain words", f"embed {TOKEN} too"])
    assert raw.headers[GUARD] == "scanned; redacted=1"
    assert len(raw.parse().data) == 2
    (sent,) = received(upstream, since)
    assert sent["body"]["input"] == ["plain words", f"embed {REDACTED} too"]
    only_redacted(sent, 1)


def test_built_in_secret_rules(oai: openai.OpenAI, upstream: FakeUpstream) -> None:
    """The built-in rules are on by default (secrets redacted): an AWS access key id and a GitHub token, made up
    here, never reach the upstream."""
    alnum = string.ascii_uppercase + string.digits
    aws = "AKIA" + "".join(secrets.choice(alnum) for _ in range(16))
    github = "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
    since = len(upstream.requests)
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-echo", messages=[{"role": "user", "content": f"keys {aws} and {github}"}], stream=True
    )
    assert raw.headers[GUARD] == "scanned; redacted=2"
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)  # type: ignore[union-attr]
    (sent,) = received(upstream, since)
    assert sent["body"]["messages"][0]["content"] == "keys [REDACTED:aws-access-key-id] and [REDACTED:github-pat]"
    assert aws.encode() not in sent["raw"] and github.encode() not in sent["raw"]


# --- block, log, headers ---------------------------------------------------------------------------------------


def test_block_names_rule_and_path_never_the_text(oai: openai.OpenAI, upstream: FakeUpstream) -> None:
    since = len(upstream.requests)
    messages: Any = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": f"use {BLOCKED}"}]},
    ]
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            oai.chat.completions.create(model="gpt-echo", messages=messages, stream=stream)
        error: Any = caught.value.body
        assert error["code"] == "content_policy_violation"
        assert error["type"] == "invalid_request_error"
        assert error["param"] == "messages[2].content[1].text"
        assert "'blk-token'" in error["message"] and "messages[2].content[1].text" in error["message"]
        assert BLOCKED not in caught.value.response.text
        assert caught.value.response.headers[GUARD] == "scanned; blocked=1"
    assert received(upstream, since) == []  # nothing left the gateway


def test_block_on_every_other_ingress(
    oai: openai.OpenAI, ant: anthropic.Anthropic, upstream: FakeUpstream, claude: FakeAnthropic
) -> None:
    since, since_claude = len(upstream.requests), len(claude.requests)
    with pytest.raises(anthropic.BadRequestError) as refused:
        ant.messages.create(
            model="claude-echo",
            max_tokens=16,
            messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": BLOCKED}]}],
        )
    body: Any = refused.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "'blk-token'" in body["error"]["message"] and "messages[0].content[0].content" in body["error"]["message"]
    assert BLOCKED not in refused.value.response.text
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(
            model="gpt-native", input=[{"type": "function_call_output", "call_id": "c", "output": BLOCKED}]
        )
    assert caught.value.body["param"] == "input[0].output"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        oai.embeddings.create(model="embed", input=["a", "b", BLOCKED])
    assert caught.value.body["param"] == "input[2]"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:  # a deny pattern: category injection, blocked by default
        oai.chat.completions.create(
            model="gpt-echo", messages=[{"role": "user", "content": "Status of Project  Bluebird?"}]
        )
    assert "'codename' (injection)" in caught.value.body["message"]  # type: ignore[index]
    assert received(upstream, since) == [] and received(claude, since_claude) == []


def test_header_says_what_ran(oai: openai.OpenAI, upstream: FakeUpstream) -> None:
    clean = oai.chat.completions.with_raw_response.create(
        model="gpt-echo", messages=[{"role": "user", "content": "hi"}]
    )
    assert clean.headers[GUARD] == "scanned"
    since = len(upstream.requests)
    logged = oai.chat.completions.with_raw_response.create(
        model="gpt-echo", messages=[{"role": "user", "content": f"see {TICKET} and {TOKEN}"}]
    )
    assert logged.headers[GUARD] == "scanned; redacted=1; logged=1"
    (sent,) = received(upstream, since)
    assert sent["body"]["messages"][0]["content"] == f"see {TICKET} and {REDACTED}"  # a log rule changes nothing


def test_answers_are_masked(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="gpt-leak", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content == f"model=leak {REDACTED}"
    assert raw.headers[GUARD] == "scanned; answer-redacted=1"
    assert LEAK not in raw.text


# --- classification ---------------------------------------------------------------------------------------------


def test_classification_picks_a_cleared_deployment(oai: openai.OpenAI) -> None:
    hi: Any = [{"role": "user", "content": "hi"}]
    default = oai.chat.completions.create(model="tiered", messages=hi)  # internal, the configured default
    assert default.choices[0].message.content == "model=echo-internal"
    high = oai.chat.completions.create(
        model="tiered", messages=hi, extra_headers={"x-ferrogate-classification": "confidential"}
    )
    assert high.choices[0].message.content == "model=echo-restricted"
    public = oai.chat.completions.create(
        model="public-only", messages=hi, extra_headers={"x-ferrogate-classification": "Public"}
    )
    assert public.choices[0].message.content == "model=echo"


def test_classification_refusals(oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    hi: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.PermissionDeniedError) as refused:
        oai.chat.completions.create(model="public-only", messages=hi)  # internal by default: not cleared
    body: Any = refused.value.body
    assert body["code"] == "classification_not_cleared"
    assert "'internal'" in body["message"]
    with pytest.raises(anthropic.PermissionDeniedError) as refused_ant:
        ant.messages.create(
            model="public-only", max_tokens=8, messages=hi, extra_headers={"x-ferrogate-classification": "restricted"}
        )
    assert refused_ant.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert "'restricted'" in refused_ant.value.body["error"]["message"]  # type: ignore[index]
    restricted = oai.chat.completions.create(
        model="tiered", messages=hi, extra_headers={"x-ferrogate-classification": "restricted"}
    )
    assert restricted.choices[0].message.content == "model=echo-restricted"  # its second deployment is cleared
    with pytest.raises(openai.BadRequestError) as bad:
        oai.chat.completions.create(
            model="tiered", messages=hi, extra_headers={"x-ferrogate-classification": "secret!"}
        )
    assert bad.value.body["param"] == "x-ferrogate-classification"  # type: ignore[index]
    assert "x-ferrogate-classification" in bad.value.body["message"]  # type: ignore[index]


# --- nothing in clear downstream ------------------------------------------------------------------------------


def test_metrics_audit_and_log_carry_no_token(gw: Gateway, key: dict[str, Any], oai: openai.OpenAI) -> None:
    oai.chat.completions.create(model="gpt-echo", messages=[{"role": "user", "content": f"one more {TOKEN}"}])
    series = 'ferrogate_guardrail_findings_total{action="redact",category="custom",rule="acme-token"}'
    deadline = time.monotonic() + 10
    while True:  # metrics are flushed every second
        metrics = httpx.get(f"{gw.url}/metrics").text
        if series in metrics or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert series in metrics
    assert 'rule="blk-token"' in metrics and 'action="block"' in metrics
    assert TOKEN not in metrics and BLOCKED not in metrics
    finding = {"rule": "acme-token", "category": "custom", "action": "redact", "path": "messages[0].content"}
    deadline = time.monotonic() + 10
    while True:  # audit records are written in batches
        records = admin(gw, "GET", f"/audit?team_id={key['team']['id']}&kind=request&limit=200")["data"]
        guarded = [r for r in records if r["data"].get("guardrails")]
        redacted = any(finding in r["data"]["guardrails"] for r in guarded)  # this test's own request
        blocked = [r for r in guarded if r["data"]["error"] == "content_policy_violation"]
        rules = {f["rule"] for r in blocked for f in r["data"]["guardrails"]}
        if (redacted and rules >= {"blk-token", "codename"}) or time.monotonic() > deadline:
            break  # every record this module's requests made is in (or the deadline passed)
        time.sleep(0.2)
    trail = json.dumps(records)
    assert TOKEN not in trail and BLOCKED not in trail and TICKET not in trail
    assert redacted
    assert rules >= {"blk-token", "codename"}
    log = gw.log()
    assert TOKEN not in log and BLOCKED not in log
