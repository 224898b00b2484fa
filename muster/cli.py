"""``muster``: the operator's command.

Subcommands:
    stack up | down | status   start, stop or show the local Kafka and PostgreSQL (see :mod:`deploy.stack`)
    db upgrade                 run every service's migrations
    serve SERVICE              run roster, dispatch or notify in the foreground

Services add their own groups (``muster roster …``, ``muster incident …``) in
:func:`_register_service_commands`.
"""

from __future__ import annotations

import importlib
import os
import sys
from enum import StrEnum

import typer

from deploy import stack

app = typer.Typer(help="Red Cross volunteer dispatch platform.", no_args_is_help=True, pretty_exceptions_enable=False)
stack_app = typer.Typer(help="The local Kafka broker and PostgreSQL cluster.", no_args_is_help=True)
db_app = typer.Typer(help="Databases and migrations.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")


class ServiceName(StrEnum):
    roster = "roster"
    dispatch = "dispatch"
    notify = "notify"


def _print_env(env: dict[str, str]) -> None:
    """Print the settings with secrets hidden: passwords in URLs and generated keys/tokens (full values in the file)."""
    import re

    typer.echo(f"# settings the services use (full values, secrets included, in {stack.env_file()})")
    for key, value in env.items():
        shown = re.sub(r"(://[^:/@]+:)[^@]+@", r"\1****@", value)
        if any(word in key for word in ("SECRET", "KEY", "TOKEN")):
            shown = "<generated; see the env file>"
        typer.echo(f"{key}={shown}")


@stack_app.command("up")
def stack_up(
    services: bool = typer.Option(False, "--services", help="Also start the simulator and the three services."),
) -> None:
    """Start PostgreSQL and Kafka (reusing running ones), create topics, print the settings."""
    try:
        env = stack.stack_up()
        if services:
            stack.services_up()
    except stack.StackError as exc:
        typer.echo(f"stack up failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    _print_env(env)


@stack_app.command("down")
def stack_down() -> None:
    """Stop the services (if running), Kafka and PostgreSQL cleanly (data is kept)."""
    stack.services_down()
    stack.stack_down()


@stack_app.command("status")
def stack_status() -> None:
    """Show whether Kafka and PostgreSQL run, and the settings."""
    typer.echo(f"kafka:    {stack.kafka_status()}")
    typer.echo(f"postgres: {stack.postgres_status()}")
    for name in stack.SERVICE_PROCESSES:
        typer.echo(f"{name + ':':<10}{stack.service_status(name)}")
    if stack.env_file().exists():
        _print_env(stack.stack_env())


@stack_app.command("env")
def stack_env_cmd() -> None:
    """Print the stack's settings as shell assignments (``eval "$(muster stack env)"``)."""
    for key, value in stack.stack_env().items():
        typer.echo(f"export {key}='{value}'")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Run every service's migrations up to head."""
    from shared.db import upgrade
    from shared.settings import DispatchSettings, NotifySettings, RosterSettings

    for name, settings_cls in (("roster", RosterSettings), ("dispatch", DispatchSettings), ("notify", NotifySettings)):
        settings = settings_cls()
        upgrade(name, settings.dsn)
        typer.echo(f"{name}: migrated to head")


contract_app = typer.Typer(help="The event contract.", no_args_is_help=True)
app.add_typer(contract_app, name="contract")


@contract_app.command("asyncapi")
def contract_asyncapi(write: bool = typer.Option(False, "--write", help="Write docs/asyncapi.json")) -> None:
    """Print (or write) the AsyncAPI document generated from shared/events.py and shared/topics.py."""
    import json

    from shared.asyncapi import ASYNCAPI_PATH, asyncapi_document

    text = json.dumps(asyncapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if write:
        ASYNCAPI_PATH.parent.mkdir(parents=True, exist_ok=True)
        ASYNCAPI_PATH.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {ASYNCAPI_PATH}")
    else:
        typer.echo(text, nl=False)


@app.command("serve")
def serve(service: ServiceName, port: int | None = typer.Option(None, help="HTTP port (default from settings)")) -> None:
    """Run one service in the foreground (HTTP API, consumers, outbox relay)."""
    import uvicorn

    module = importlib.import_module(f"services.{service.value}.app")
    application = module.create_app()
    settings = application.state.runtime.settings
    # The console's live streams (SSE) never end by themselves: after 5 s of graceful shutdown uvicorn cancels
    # what is left and runs the lifespan's shutdown (outbox relay, pool), instead of a SIGKILL after 20 s.
    uvicorn.run(application, host=settings.http_host, port=port or settings.http_port, log_config=None,
                access_log=False, timeout_graceful_shutdown=5)


def _register_service_commands() -> None:
    """Mount the command groups of the services, the simulator and the drill when they exist."""
    groups = {
        "roster": "services.roster.cli",
        "incident": "services.dispatch.cli",
        "notify": "services.notify.cli",
        "simulator": "simulator.cli",
        "drill": "muster.drill.cli",
    }
    for group, modname in groups.items():
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:
                raise
            continue
        app.add_typer(module.app, name=group)


_register_service_commands()


def main() -> None:  # pragma: no cover - console entry
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(app())
