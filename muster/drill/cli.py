"""``muster drill``: run a drill scenario end to end on the real stack and report how it went."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Drills: mobilise the network on the real stack and report.", no_args_is_help=True)


@app.command("run")
def run(
    scenario: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Scenario YAML (see scenarios/).")],
    report: Annotated[Path | None, typer.Option(help="Where to write the JSON report (HTML beside it).")] = None,
    no_start: Annotated[bool, typer.Option("--no-start", help="Do not start the stack and services.")] = False,
) -> None:
    """Run SCENARIO end to end on the real stack and exit 0 only when the drill passed.

    Starts what is not running, seeds the roster if empty, opens the incidents in drill mode, plays the
    volunteers' phones, follows the boards, closes, and reports. Exits 0 only when every integrity count
    is 0 and the scenario's expectations hold; 1 when not; 2 when the scenario file is invalid.
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
