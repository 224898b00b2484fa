"""``muster roster import`` against the roster database: dry runs and bad files only, so nothing is written."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from muster.cli import app


def _register(tmp_path: Path, rows: list[str], encoding: str = "gb18030") -> Path:
    p = tmp_path / f"r-{uuid.uuid4().hex[:6]}.csv"
    p.write_bytes(("姓名,手机号码,区县,乡镇(街道),村(社区),技能,身份证号\n" + "".join(rows)).encode(encoding))
    return p


def test_bad_file_exits_non_zero_and_lists_every_bad_row(tmp_path: Path, stack: Any) -> None:
    f = _register(tmp_path, [
        "甲,19992000001,柯桥区,平水镇,王化村,救护员,x\n",
        "乙,123,柯桥区,平水镇,王化村,救护员,x\n",
        "丙,19992000003,柯桥区,平水镇,王化材,救护员,x\n",
        "丁,19992000004,柯桥区,平水镇,王化村,开飞机,x\n",
    ])
    result = CliRunner().invoke(app, ["roster", "import", str(f)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "row 3, 手机号码" in out and "row 4, 村(社区)" in out and "王化村委会" in out and "row 5, 技能" in out
    assert "nothing imported" in out and "身份证号" in out


def test_dry_run_exits_zero_and_writes_nothing(tmp_path: Path, stack: Any) -> None:
    m = f"19992{uuid.uuid4().int % 10**6:06d}"
    f = _register(tmp_path, [f"甲,{m},柯桥区,平水镇,王化村,救护员,x\n"], encoding="utf-8-sig")
    result = CliRunner().invoke(app, ["roster", "import", str(f), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "1 new, 0 updated, 0 unchanged would be imported" in result.output
    again = CliRunner().invoke(app, ["roster", "import", str(f), "--dry-run", "--json"])
    assert '"committed": false' in again.output and '"created": 1' in again.output


def test_a_header_only_file_exits_non_zero(tmp_path: Path, stack: Any) -> None:
    for rows in ([], [",,,,,,\n", "\n"]):
        f = _register(tmp_path, rows, encoding="utf-8")
        result = CliRunner().invoke(app, ["roster", "import", str(f)])
        assert result.exit_code == 1, result.output
        assert "no data rows" in result.output and "nothing imported" in result.output
        dry = CliRunner().invoke(app, ["roster", "import", str(f), "--dry-run"])
        assert dry.exit_code == 1, dry.output
