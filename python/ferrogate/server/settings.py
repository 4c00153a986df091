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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read ``FERROGATE_MASTER_KEY``, ``FERROGATE_DEV``, ``FERROGATE_DATABASE_URL``, ``FERROGATE_REDIS_URL``.

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
        return cls(master, dev, env.get("FERROGATE_DATABASE_URL") or None, env.get("FERROGATE_REDIS_URL") or None)
