"""Process settings: the store-outage knobs (FERROGATE_AUTH_STALE_IF_ERROR_S, FERROGATE_STORE_TIMEOUT_S)."""

from __future__ import annotations

import pytest

from ferrogate.server.settings import Settings, SettingsError

BASE = {"FERROGATE_MASTER_KEY": "settings-master-key-0123"}


def test_outage_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert (settings.auth_stale_if_error_s, settings.store_timeout_s, settings.auth_cache_ttl_s) == (900.0, 2.0, 1.0)


def test_outage_values_are_read() -> None:
    env = {**BASE, "FERROGATE_AUTH_STALE_IF_ERROR_S": "0", "FERROGATE_STORE_TIMEOUT_S": "0.5"}
    settings = Settings.from_env(env)
    assert (settings.auth_stale_if_error_s, settings.store_timeout_s) == (0.0, 0.5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FERROGATE_AUTH_STALE_IF_ERROR_S", "soon"),
        ("FERROGATE_AUTH_STALE_IF_ERROR_S", "-1"),
        ("FERROGATE_AUTH_STALE_IF_ERROR_S", "nan"),
        ("FERROGATE_STORE_TIMEOUT_S", "0"),
        ("FERROGATE_STORE_TIMEOUT_S", "nan"),
    ],
)
def test_bad_outage_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE, name: value})


def test_guardrail_poll_period() -> None:
    assert Settings.from_env(BASE).guardrails_poll_s == 0.5
    assert Settings.from_env({**BASE, "FERROGATE_GUARDRAILS_POLL_S": "30"}).guardrails_poll_s == 30.0
    for bad in ("0", "-1", "nan", "often"):
        with pytest.raises(SettingsError, match="FERROGATE_GUARDRAILS_POLL_S"):
            Settings.from_env({**BASE, "FERROGATE_GUARDRAILS_POLL_S": bad})
