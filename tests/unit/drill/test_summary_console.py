from deploy.stack import StackSettings
from muster.drill.report import INTEGRITY_KEYS, console_url, print_summary


def test_the_summary_prints_the_consoles_address_and_each_incidents_report_page(capsys, tmp_path):
    report = {
        "scenario": "s", "ok": True, "wall_seconds": 1.0, "errors": [], "expectations": [],
        "integrity": dict.fromkeys(INTEGRITY_KEYS, 0),
        "incidents": [{"title": "t", "incident_id": "1f0c", "figures": {}}],
    }
    print_summary(report, (tmp_path / "r.json", tmp_path / "r.html"))
    out = capsys.readouterr().out.splitlines()
    port = StackSettings().dispatch_port
    assert console_url() == f"http://127.0.0.1:{port}/console/"
    assert f"console: http://127.0.0.1:{port}/console/" in out
    assert f"console report: http://127.0.0.1:{port}/console/incidents/1f0c/report" in out
