"""The ``mcp`` section of the configuration: servers of both transports, secrets through ``${ENV}``, errors that
name the YAML path."""

from __future__ import annotations

import pytest

from ferrogate.config import ConfigError, load_config_text
from ferrogate.config.mcp import McpHttpServer, McpSettings, McpStdioServer

SERVERS = """
mcp:
  tool_calls_per_minute: 120
  default_policy: {allow: ["docs"], deny: ["docs/delete_*"]}
  servers:
    - id: docs
      transport: http
      url: https://mcp.example.com/mcp
      headers: {X-Api-Key: "${DOCS_KEY}"}
      bearer_token: "${DOCS_TOKEN}"
      on_change: hide
    - id: files
      transport: stdio
      command: mcp-files
      args: ["--root", "/srv"]
      env: {FILES_TOKEN: "${FILES_TOKEN:-fallback-token}"}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "test.yaml", env or {})
    return info.value.problems


def test_servers_of_both_transports_with_interpolated_secrets() -> None:
    cfg = load_config_text(SERVERS, "t", {"DOCS_KEY": "key-123", "DOCS_TOKEN": "tok-456"})
    docs, files = cfg.mcp.servers
    assert isinstance(docs, McpHttpServer) and isinstance(files, McpStdioServer)
    assert docs.headers["X-Api-Key"].get_secret_value() == "key-123"
    assert docs.bearer_token is not None and docs.bearer_token.get_secret_value() == "tok-456"
    assert files.env["FILES_TOKEN"].get_secret_value() == "fallback-token"
    assert (docs.on_change, files.on_change, docs.timeout_s, docs.refresh_s) == ("hide", "flag", 30.0, 300.0)
    assert cfg.mcp.tool_calls_per_minute == 120
    assert cfg.mcp.default_policy.allow == ["docs"]
    # secrets are not shown by repr nor by a JSON dump
    assert "tok-456" not in repr(docs) and "key-123" not in docs.model_dump_json()


def test_defaults() -> None:
    cfg = load_config_text("", "t", {})
    assert cfg.mcp == McpSettings()
    assert (cfg.mcp.enabled, cfg.mcp.servers, cfg.mcp.max_argument_bytes) == (True, [], 1_048_576)
    assert (cfg.mcp.default_policy.allow, cfg.mcp.default_policy.deny) == ([], [])


def test_an_unset_secret_names_its_path() -> None:
    text = "mcp: {servers: [{id: a, transport: http, url: 'http://h/mcp', bearer_token: '${NOPE}'}]}"
    assert ("mcp.servers[0].bearer_token", "environment variable NOPE is not set") in problems(text)


@pytest.mark.parametrize(
    ("server", "path"),
    [
        ("{id: a_b, transport: http, url: 'http://h'}", "mcp.servers[0].http.id"),  # no "_" in ids
        ("{id: Docs, transport: http, url: 'http://h'}", "mcp.servers[0].http.id"),
        ("{id: a, transport: http, url: 'ftp://h'}", "mcp.servers[0].http.url"),
        ("{id: a, transport: http}", "mcp.servers[0].http.url"),
        ("{id: a, transport: stdio}", "mcp.servers[0].stdio.command"),
        ("{id: a, transport: smtp}", "mcp.servers[0]"),
        ("{id: a, transport: http, url: 'http://h', timeout_s: 0}", "mcp.servers[0].http.timeout_s"),
        ("{id: a, transport: http, url: 'http://h', on_change: drop}", "mcp.servers[0].http.on_change"),
        ("{id: a, transport: http, url: 'http://h', headers: {'bad name': x}}", "mcp.servers[0].http.headers"),
        ("{id: a, transport: stdio, command: x, url: 'http://h'}", "mcp.servers[0].stdio.url"),
    ],
)
def test_server_errors_name_the_yaml_path(server: str, path: str) -> None:
    found = [p for p, _ in problems(f"mcp: {{servers: [{server}]}}")]
    assert path in found, found


def test_duplicate_ids_name_the_second() -> None:
    text = "mcp: {servers: [{id: a, transport: http, url: 'http://h'}, {id: a, transport: stdio, command: x}]}"
    assert problems(text) == [("mcp.servers[1].id", "duplicate id 'a'")]


def test_bearer_token_and_authorization_header_conflict() -> None:
    text = "mcp: {servers: [{id: a, transport: http, url: 'http://h', bearer_token: t, headers: {authorization: u}}]}"
    [(path, message)] = problems(text)
    assert path == "mcp.servers[0].http" and "Authorization" in message


@pytest.mark.parametrize(
    ("policy", "path"),
    [
        ("{allow: ['docs', 'bad glob']}", "mcp.default_policy.allow[1]"),
        ("{deny: ['']}", "mcp.default_policy.deny[0]"),
        ("{allow: [], keys: {}}", "mcp.default_policy.keys"),
    ],
)
def test_default_policy_errors(policy: str, path: str) -> None:
    assert path in [p for p, _ in problems(f"mcp: {{default_policy: {policy}}}")]
