"""The ``ferrogate`` command: ``serve``, ``config check``, ``version``.

Example:
    ``ferrogate serve --port 8080 --workers 2 --config configs/example.yaml``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.config
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ferrogate import __version__
from ferrogate.config import Config, ConfigError, default_config, load_config
from ferrogate.manage import add_manage_commands, prepare_store


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    code: int = args.func(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferrogate", description="ferrogate, the AI gateway")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="start the gateway")
    serve.add_argument("--host", default=os.environ.get("FERROGATE_HOST", "0.0.0.0"), help="address to bind")
    serve.add_argument("--port", type=int, default=int(os.environ.get("FERROGATE_PORT", "8080")), help="port")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--config", default=os.environ.get("FERROGATE_CONFIG"), help="YAML configuration file")
    serve.add_argument(
        "--log-level",
        default=os.environ.get("FERROGATE_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    serve.add_argument(
        "--loop",
        default=os.environ.get("FERROGATE_LOOP", "auto"),
        choices=["auto", "asyncio", "uvloop"],
        help="the workers' event loop (auto: uvloop where installed, else asyncio)",
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="local use only: no FERROGATE_MASTER_KEY needed, callers without a key get every model",
    )
    serve.set_defaults(func=_serve)
    add_manage_commands(sub)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file")
    check.set_defaults(func=_config_check)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)
    return parser


def _load(path: str | None) -> Config:
    return load_config(path) if path else default_config()


def _config_check(args: argparse.Namespace) -> int:
    from ferrogate.guardrails import Guardrails
    from ferrogate.routing.rules import RoutingRules
    from ferrogate.server.app import price_table

    try:
        config = load_config(args.file)
        price_table(config)  # server.prices_file, if named, must exist and be valid too
        Guardrails(config.guardrails)  # every rule compiles (the Gitleaks file's too)
        RoutingRules.load(config.routing)  # every routing rule parses and validates against the schema
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.file}: ok ({len(config.upstreams)} upstreams, {len(config.model_groups)} model groups)")
    return 0


def _version(args: argparse.Namespace) -> int:
    from ferrogate import _core

    print(f"ferrogate {__version__} (core {_core.__version__})")
    return 0


def _warn_unpriced(config: Config) -> None:
    """Warn at start about every served model the price table does not know (its cost is unknown).

    Raises:
        ConfigError: ``server.prices_file`` is named but missing or invalid.
    """
    from ferrogate.server.app import price_table

    models = {d.model or g.name for g in config.model_groups for d in g.deployments}
    missing = price_table(config).missing(sorted(models))
    if missing:
        consequence = (
            "refused on a chain with a budget (budgets.unpriced: refuse)"
            if config.budgets.unpriced == "refuse"
            else "admitted past budgets unchecked (budgets.unpriced: allow)"
        )
        extra = config.server.prices_file
        logging.getLogger("ferrogate").warning(
            "no price for %s: their requests are recorded with an unknown cost and %s; price them in "
            "server.prices_file (%s) or with price: on the deployment",
            ", ".join(missing),
            consequence,
            "not set: the packaged table alone is used" if extra is None else f"{extra}, over the packaged table",
        )


def _serve(args: argparse.Namespace) -> int:
    from granian.constants import Interfaces, Loops

    from ferrogate.observability.logs import logging_config
    from ferrogate.server.settings import Settings, SettingsError
    from ferrogate.store import StoreError

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.dev:
        os.environ["FERROGATE_DEV"] = "1"
    try:
        settings = Settings.from_env()
        config = _load(args.config)
        asyncio.run(prepare_store(settings.database_url))
    except (ConfigError, StoreError, SettingsError) as exc:
        print(f"ferrogate: {exc}", file=sys.stderr)
        return 1
    if settings.dev:
        print("ferrogate: --dev: callers without a key are let in; not for production", file=sys.stderr)
    log_config = logging_config(args.log_level, config.logging.format)
    logging.config.dictConfig(log_config)  # the workers apply the same (Granian's log_dictconfig)
    try:
        _warn_unpriced(config)  # reads the price table once here, so a bad prices_file stops the start
        from ferrogate.guardrails import Guardrails

        Guardrails(config.guardrails)  # a rule that does not compile stops the start, naming it
        from ferrogate.routing.rules import RoutingRules

        RoutingRules.load(config.routing)  # so does a routing rule that does not validate, naming its line
    except ConfigError as exc:
        print(f"ferrogate: {exc}", file=sys.stderr)
        return 1
    if not settings.redis_url:  # the workers of this instance share one limiter table
        from ferrogate.limits import default_table_path

        os.environ.setdefault("FERROGATE_LIMITS_PATH", str(default_table_path(str(args.port))))
    from ferrogate.routing.health import table_path

    # and, with or without Redis, one circuit-breaker table (Redis carries trips between instances), removed at
    # exit when this process named it
    own_circuits = "FERROGATE_CIRCUITS_PATH" not in os.environ
    os.environ.setdefault("FERROGATE_CIRCUITS_PATH", str(table_path(str(args.port))))
    if args.config:
        os.environ["FERROGATE_CONFIG"] = str(Path(args.config).resolve())
    if args.workers < 1:
        print("ferrogate: --workers must be at least 1", file=sys.stderr)
        return 1
    from ferrogate.observability.metrics import instance_directory
    from ferrogate.server.supervise import exec_supervisor, run, spec_json

    # The workers' Prometheus files (multiprocess mode): a fresh directory for this instance, removed at exit,
    # unless PROMETHEUS_MULTIPROC_DIR is set. Prometheus-client is not loaded in this process before it is set.
    metrics_dir = instance_directory(str(args.port))
    print(
        f"ferrogate {__version__} listening on http://{args.host}:{args.port} "
        f"({args.workers} worker(s); models: {', '.join(g.name for g in config.model_groups) or 'none'})",
        flush=True,
    )
    granian = {  # Granian's server; a dead worker is respawned, with a backoff in a crash loop
        "target": "ferrogate.server.app:create_app",
        "factory": True,
        "interface": Interfaces.RSGI.value,
        "address": args.host,
        "port": args.port,
        "workers": args.workers,
        "log_level": args.log_level,
        "log_access": False,
        "websockets": False,  # no WebSocket route: skip the upgrade handling
        "loop": Loops(args.loop).value,
        "workers_kill_timeout": int(config.server.grace_period_s) + 5,
    }
    spec = spec_json(
        granian,
        (config.server.respawn_backoff_s, config.server.respawn_backoff_max_s),
        log_config,
        [] if metrics_dir is None else [str(metrics_dir)],
        [os.environ["FERROGATE_CIRCUITS_PATH"]] if own_circuits else [],
    )
    # This process has imported most of the package for its checks: the supervisor that serves from here on is a
    # fresh, small one in its place (same PID; ferrogate.server.supervise). Only without an executable to start
    # is it this process itself.
    exec_supervisor(spec)
    return run(json.loads(spec))


if __name__ == "__main__":
    sys.exit(main())
