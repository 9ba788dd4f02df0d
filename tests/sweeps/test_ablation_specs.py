"""Ablation specs and the commands `experiments/run.py` builds from them (nothing trains)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import CONF_DIR, compose_config

from mtl.sweeps.commands import job_dirnames, plan_ablation, report_command
from mtl.sweeps.spec import AblationSpec, SpecError

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "experiments" / "ablations").glob("*.yaml"))


def _run_module():
    spec = importlib.util.spec_from_file_location("experiments_run", ROOT / "experiments/run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_four_ablations_are_there():
    names = {p.stem for p in SPECS}
    assert names == {"weighting_ct", "architecture_scenes", "loss_weights_ct", "imbalance_ct"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
@pytest.mark.parametrize("size", ["quick", "full"])
def test_every_spec_plans_resumable_sweeps(path, size, tmp_path):
    spec = AblationSpec.load(path)
    planned = plan_ablation(spec, size, tmp_path)
    assert planned[-1].sweep.name == "runs"  # baselines first
    for item in planned:
        assert item.sweep_dir == tmp_path / spec.name / size / item.sweep.name
        command = item.command
        assert command[2] == "-m"
        assert "skip_finished=true" in command
        assert "ckpt_path=last" in command
        assert f"group={spec.name}-{size}" in command
        assert f"job_type={item.sweep.job_type}" in command
        assert f"hydra.sweep.dir={item.sweep_dir}" in command
        assert "hydra.sweep.subdir=${hydra.job.override_dirname}" in command
        assert any(a.startswith("seed=") for a in command)
    report = report_command(spec, planned, tmp_path / "report")
    assert report[1:4] == ["-m", "mtl.report", str(planned[-1].sweep_dir)]
    assert report[-2:] == ["--stage", "test"] or "--stage" in report


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
@pytest.mark.parametrize("size", ["quick", "full"])
def test_every_spec_composes(path, size, tmp_path):
    """The first job of every sweep composes with Hydra (a typo in a spec fails here)."""
    spec = AblationSpec.load(path)
    if any(not (Path(CONF_DIR) / req).exists() for req in spec.requires):
        pytest.skip(f"{spec.name} needs configs not merged yet: {spec.requires}")
    for sweep in spec.plan(size):
        first = [f"{k}={v[0]}" for k, v in sweep.axes.items()]
        extra = ["trainer=cpu"] if any(o == "trainer=gpu" for o in sweep.overrides) else []
        cfg = compose_config(tmp_path, [*sweep.overrides, *first, *extra])
        assert cfg.seed == sweep.axes["seed"][0]


def test_dry_run_prints_the_exact_commands(capsys, tmp_path):
    run = _run_module()
    code = run.main(["weighting_ct", "--dry-run", "--log-dir", str(tmp_path), "seed=0"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert len(lines) == 3  # STL baseline, the methods, the report
    base = str(tmp_path / "ablations" / "weighting_ct" / "quick")
    assert " -m experiment=ct_default " in lines[0]
    assert "model=stl weighting=ew seed=0 skip_finished=true ckpt_path=last" in lines[0]
    assert f"hydra.sweep.dir={base}/baseline_stl" in lines[0]
    assert "job_type=baseline" in lines[0]
    assert "weighting=ew,uw,famo,pcgrad,mgda seed=0 " in lines[1]
    assert "'tags=[weighting_ct,quick]'" in lines[1]
    assert "'hydra.sweep.subdir=${hydra.job.override_dirname}'" in lines[1]
    assert lines[2].endswith(
        f"-m mtl.report {base}/runs --rows weighting --baselines {base}/baseline_stl "
        f"--out {base}/report --stage test"
    )


def test_command_line_overrides_replace_axes_and_join_the_rest(tmp_path):
    spec = AblationSpec.load(ROOT / "experiments/ablations/weighting_ct.yaml")
    runs = plan_ablation(spec, "quick", tmp_path, ["weighting=ew,uw", "seed=5", "a.b=1"])[-1]
    assert "weighting=ew,uw" in runs.command
    assert "seed=5" in runs.command
    assert "a.b=1" in runs.command
    exclude = next(a for a in runs.command if a.startswith("hydra.job.config.override_dirname"))
    assert "a.b" in exclude and "weighting" not in exclude.split("=", 1)[1]


def test_later_overrides_of_a_key_win(tmp_path):
    spec = AblationSpec.from_dict("x", {"overrides": ["trainer.max_epochs=3"], "axes": {}})
    runs = plan_ablation(spec, "quick", tmp_path, ["trainer.max_epochs=1"])[-1]
    assert "trainer.max_epochs=1" in runs.command
    assert "trainer.max_epochs=3" not in runs.command


def test_list_values_become_a_choice_sweep(tmp_path):
    spec = AblationSpec.from_dict("x", {"axes": {"tasks": [["seg"], ["seg", "cls"]]}})
    runs = plan_ablation(spec, "quick", tmp_path)[-1]
    assert "tasks=choice([seg],[seg,cls])" in runs.command


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"axis": {}}, "unknown keys ['axis']"),
        ({"axes": {"seed": [1, 2]}}, "list seeds under `seeds:`"),
        ({"axes": {"weighting": "ew"}}, "non-empty list"),
        ({"seeds": ["a"]}, "seeds must be integers"),
        ({"sizes": {"huge": {}}}, "unknown size 'huge'"),
        ({"sizes": {"quick": {"overides": []}}}, "unknown keys ['overides']"),
        ({"report": {"baselines": ["stl"]}}, "unknown baselines ['stl']"),
        ({"overrides": "a=1"}, "expected a list of overrides"),
    ],
)
def test_bad_specs_fail_with_the_key(raw, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AblationSpec.from_dict("bad", raw)


def test_job_folders_must_not_nest_collide_or_overflow():
    with pytest.raises(SpecError, match="contain '/'"):
        job_dirnames({"data.root": ["/data/a"]})
    with pytest.raises(SpecError, match="share a folder"):
        job_dirnames({"x": [1, "1"]})
    with pytest.raises(SpecError, match="characters"):
        job_dirnames({"x": ["v" * 300]})
    assert job_dirnames({"b": [1], "a": [True, None]}) == ["a=true,b=1", "a=null,b=1"]


def test_missing_configs_stop_before_training(monkeypatch, tmp_path, capsys):
    run = _run_module()
    monkeypatch.setattr(run, "CONF_DIR", tmp_path)  # as if conf/sampler/ were not merged
    assert run.main(["imbalance_ct", "--log-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "needs configs this checkout lacks: conf/sampler/none.yaml" in err
    assert not (tmp_path / "ablations").exists()


def test_unknown_ablation_lists_the_known_ones():
    run = _run_module()
    with pytest.raises(SpecError, match="available: architecture_scenes, imbalance_ct"):
        run.main(["nope", "--dry-run"])
