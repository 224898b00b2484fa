"""``muster drill``: run a drill scenario end to end on the real stack and report how it went."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Drills: mobilise the network on the real stack and report.", no_args_is_help=True)


@app.command("run")
def run(
    scenario: Path = typer.Argument(..., exists=True, dir_okay=False, help="Scenario YAML (see scenarios/)."),
    report: Path | None = typer.Option(None, help="Where to write the JSON report (HTML beside it)."),
    no_start: bool = typer.Option(False, "--no-start", help="Do not start the stack and services."),
) -> None:
    """Run SCENARIO: start what is not running, seed the roster if empty, open the incidents in drill
    mode, play the volunteers' phones, follow the boards, close, and report. Exits 0 only when every
    integrity count is 0 and the scenario's expectations hold.
    """
    import asyncio

    from muster.drill.runner import run_drill
    from muster.drill.scenario import ScenarioError, load_scenario

    try:
        plan = load_scenario(scenario)
    except ScenarioError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    ok = asyncio.run(run_drill(plan, report_path=report, start=not no_start))
    raise typer.Exit(0 if ok else 1)
