from __future__ import annotations

import pytest
import typer

from services.dispatch.cli import parse_need


def test_parse_need() -> None:
    assert parse_need("first_aid:2") == {"skill": "first_aid", "count": 2}
    assert parse_need("team:water:1") == {"team_type": "water", "count": 1}


@pytest.mark.parametrize("text", ["first_aid", "first_aid:two", "crew:water:1", "a:b:c:d"])
def test_parse_need_refuses(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_need(text)
