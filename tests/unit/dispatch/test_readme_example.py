"""The README's ``muster incident`` example names a real community, its point lies there, and every command
it shows parses (the example used ``330603101201``, which does not exist)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from muster.cli import app as muster
from services.dispatch.units import units

README = Path(__file__).resolve().parents[3] / "services" / "dispatch" / "README.md"


def commands() -> list[list[str]]:
    """The ``uv run muster …`` commands of the README's Run block, as argument lists (``;`` splits, ``\\`` joins)."""
    block = README.read_text(encoding="utf-8").split("## Run", 1)[1].split("```")[1]
    text = block.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = re.sub(r"\s#.*$", "", line).strip()
        for part in re.findall(r"uv run muster ([^;)]+)", line):
            out.append(shlex.split(part))
    return out


def test_the_example_incident_is_in_a_real_community() -> None:
    [opened] = [c for c in commands() if c[:2] == ["incident", "open"]]
    args = dict(zip(opened[2::2], opened[3::2], strict=False))
    unit = args["--unit"]
    assert unit in units().names, f"{unit} is not in the divisions file"
    units().check_point(float(args["--lat"]), float(args["--lon"]), unit)  # raises when the point is elsewhere


@pytest.mark.parametrize("argv", commands(), ids=lambda a: " ".join(a[:3]))
def test_every_readme_command_exists_with_its_options(argv: list[str]) -> None:
    # --help after the command: typer parses the command path and shows its options without running it
    path = [a for a in argv if not a.startswith("-")][:3]
    result = CliRunner().invoke(muster, [*path[: 3 if path[0] == "incident" and path[1] == "token" else 2], "--help"])
    assert result.exit_code == 0, (argv, result.output)
    for opt in (a for a in argv if a.startswith("--")):
        assert opt in result.output, (argv, opt)
