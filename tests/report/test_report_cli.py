"""`python -m mtl.report`: files written, stdout, warnings, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.report_sweep import make_sweep

from mtl.report.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = ("table.md", "table.tex", "runs.csv")


@pytest.fixture
def sweep(tmp_path):
    return make_sweep(tmp_path)


def test_report_writes_tables_csv_and_plots(sweep, capsys):
    assert main([str(sweep), "--metrics", "seg/miou,depth/abs_err"]) == 0
    out = sweep / "report"
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0
    for name in (
        "bars_seg_miou.png",
        "bars_depth_abs_err.png",
        "bars_delta_m_per_metric.png",
        "bars_delta_m_per_task.png",
        "curves_val_seg_miou.png",
        "curves_train_loss.png",
    ):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    captured = capsys.readouterr()
    assert captured.out.strip() == (out / "table.md").read_text().strip()
    assert "| ew | 2 |" in captured.out
    assert "warning: 1 failed, 1 missing run(s) not in the table" in captured.err
    assert "python -m mtl.report" in (out / "table.md").read_text()


def test_strict_makes_failed_or_missing_runs_an_error(sweep, capsys):
    assert main([str(sweep), "--strict", "--no-plots"]) == 1
    assert "--strict" in capsys.readouterr().err
    assert (sweep / "report" / "table.md").is_file()  # the report still says which
    assert main([str(sweep / "stl"), "--strict", "--no-plots"]) == 0


def test_out_rows_stage_extra_options(sweep, tmp_path):
    out = tmp_path / "elsewhere"
    code = main(
        [
            str(sweep / "stl"),
            str(sweep / "mtl"),
            "--out",
            str(out),
            "--rows",
            "model,weighting",
            "--extra",
            "model/params/total",
            "--no-plots",
        ]
    )
    assert code == 0
    text = (out / "table.md").read_text()
    assert "| model / weighting | n |" in text and "| hps / uw | 2 |" in text
    assert "model/params/total" in text and "1,000" in text
    assert not list(out.glob("*.png"))


def test_baselines_yaml_of_published_numbers(sweep, tmp_path):
    published = tmp_path / "published.yaml"
    published.write_text(
        "source: made up\n"
        "baselines: {seg: {miou: 0.5}, depth: {abs_err: 0.4}}\n"
        "higher_is_better: {seg: {miou: true}, depth: {abs_err: false}}\n"
    )
    args = [str(sweep), "--baselines", str(published), "--metrics", "seg/miou,depth/abs_err"]
    assert main([*args, "--no-plots"]) == 0
    assert "published numbers from" in (sweep / "report" / "table.md").read_text()
    assert main([str(sweep), "--baselines", str(tmp_path / "none.yaml")]) == 2


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([]) == 2
    assert "give sweep/run directories" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no runs found" in capsys.readouterr().err
    assert main(["--wandb", "me/proj"]) == 2
    assert "give --out" in capsys.readouterr().err


def test_help_runs_as_a_module():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "mtl.report", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0 and "--baselines" in result.stdout


@pytest.fixture(autouse=True)
def _no_wandb_key(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
