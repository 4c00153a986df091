"""Process settings from the environment (``ferrogate serve`` sets them for its workers)."""

from __future__ import annotations

import os
from dataclasses import dataclass

#: The master key of a ``--dev`` server started without ``FERROGATE_MASTER_KEY``. Insecure by design.
DEV_MASTER_KEY = "fg-dev-master-key-insecure"


class SettingsError(Exception):
    """The environment does not allow starting (e.g. no master key outside ``--dev``)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What a worker needs besides the YAML configuration.

    ``dev``: started with ``--dev`` (callers without a credential are let in with every model,
    and the master key defaults to :data:`DEV_MASTER_KEY`).
    """

    master_key: str
    dev: bool
    database_url: str | None
    redis_url: str | None
    auth_cache_ttl_s: float = 1.0
    auth_free_failures: int = 5
    limits_path: str | None = None  # the instance's shared limiter table (set by `ferrogate serve`)
    auth_stale_if_error_s: float = 900.0
    store_timeout_s: float = 2.0
    guardrails_poll_s: float = 0.5
    circuits_path: str | None = None  # the instance's shared circuit-breaker table (set by `ferrogate serve`)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read ``FERROGATE_MASTER_KEY``, ``FERROGATE_DEV``, ``FERROGATE_DATABASE_URL``, ``FERROGATE_REDIS_URL``,
        ``FERROGATE_AUTH_CACHE_TTL_S`` (how long a worker trusts a cached key lookup; default 1 s),
        ``FERROGATE_AUTH_FREE_FAILURES`` (failed authentications per client address and minute answered
        without delay; default 5), ``FERROGATE_AUTH_STALE_IF_ERROR_S`` (how long past its expiry a cached key
        lookup keeps answering while the store cannot be reached; default 900 s, 0: not at all) and
        ``FERROGATE_STORE_TIMEOUT_S`` (the longest a data-plane request waits on the store before it counts as
        an outage; default 2 s) and ``FERROGATE_GUARDRAILS_POLL_S`` (how often each worker reads the store's
        guardrail policy version; default 0.5 s). ``FERROGATE_LIMITS_PATH`` and ``FERROGATE_CIRCUITS_PATH`` name the
        instance's shared limiter and circuit tables (``ferrogate serve`` sets them).

        Raises:
            SettingsError: no master key and not in dev mode, or a master key under 16 characters.
        """
        env = dict(os.environ) if env is None else env
        dev = env.get("FERROGATE_DEV", "") in ("1", "true", "yes")
        master = env.get("FERROGATE_MASTER_KEY") or (DEV_MASTER_KEY if dev else "")
        if not master:
            raise SettingsError(
                "FERROGATE_MASTER_KEY is not set: set it (the admin credential and key-hashing secret) "
                "or start with --dev for local use"
            )
        if len(master) < 16:
            raise SettingsError("FERROGATE_MASTER_KEY must be at least 16 characters")
        try:
            ttl = float(env.get("FERROGATE_AUTH_CACHE_TTL_S") or 1.0)
            free = int(env.get("FERROGATE_AUTH_FREE_FAILURES") or 5)
            stale = float(env.get("FERROGATE_AUTH_STALE_IF_ERROR_S") or 900.0)
            timeout = float(env.get("FERROGATE_STORE_TIMEOUT_S") or 2.0)
            poll = float(env.get("FERROGATE_GUARDRAILS_POLL_S") or 0.5)
        except ValueError:
            raise SettingsError(
                "FERROGATE_AUTH_CACHE_TTL_S, FERROGATE_AUTH_FREE_FAILURES, FERROGATE_AUTH_STALE_IF_ERROR_S, "
                "FERROGATE_STORE_TIMEOUT_S and FERROGATE_GUARDRAILS_POLL_S must be numbers"
            ) from None
        if not (stale >= 0 and timeout > 0):  # also refuses NaN
            raise SettingsError("FERROGATE_AUTH_STALE_IF_ERROR_S must be >= 0 and FERROGATE_STORE_TIMEOUT_S > 0")
        if not poll > 0:
            raise SettingsError("FERROGATE_GUARDRAILS_POLL_S must be > 0")
        redis_url = env.get("FERROGATE_REDIS_URL") or None
        database_url = env.get("FERROGATE_DATABASE_URL") or None
        return cls(
            master,
            dev,
            database_url,
            redis_url,
            ttl,
            free,
            env.get("FERROGATE_LIMITS_PATH") or None,
            auth_stale_if_error_s=stale,
            store_timeout_s=timeout,
            guardrails_poll_s=poll,
            circuits_path=env.get("FERROGATE_CIRCUITS_PATH") or None,
        )
