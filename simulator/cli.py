"""``muster simulator …``: run the provider simulator (Aliyun SMS, Tencent SMS, WeChat) for the stack and drills."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Provider simulator: Aliyun SMS, Tencent SMS and WeChat on one local port.",
                  no_args_is_help=True)


@app.command("serve")
def serve(  # typer options as defaults, as in muster/cli.py
    port: int | None = typer.Option(None, help="Port (default SIMULATOR_PORT or 8190)."),  # noqa: B008
    notify_url: str | None = typer.Option(  # noqa: B008
        None, help="Base URL of notify's callbacks (default SIMULATOR_NOTIFY_URL)."),
    log_path: Path | None = typer.Option(  # noqa: B008
        None, help="Append-only JSONL log of delivered messages (default SIMULATOR_LOG_PATH, else the stack's "
                   "state dir)."),
    receipt_delay: float | None = typer.Option(  # noqa: B008
        None, help="Seconds before a delivery receipt is pushed."),
) -> None:
    """Run the simulator in the foreground (keys from the stack's env file, as notify reads them)."""
    import uvicorn

    from shared.logging import configure_logging
    from simulator.app import create_app
    from simulator.settings import SimulatorSettings

    overrides: dict[str, object] = {}
    if port is not None:
        overrides["port"] = port
    if notify_url is not None:
        overrides["notify_url"] = notify_url
    if receipt_delay is not None:
        overrides["receipt_delay_seconds"] = receipt_delay
    settings = SimulatorSettings(**overrides)  # type: ignore[arg-type]
    if log_path is not None:
        settings.log_path = log_path
    elif settings.log_path is None:
        from deploy.stack import state_dir

        settings.log_path = state_dir() / "simulator-messages.jsonl"
    configure_logging(service="simulator")
    typer.echo(f"simulator on http://{settings.host}:{settings.port}, log {settings.log_path}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False)
