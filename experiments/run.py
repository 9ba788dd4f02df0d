"""Run one paper-style ablation end to end: its Hydra multiruns, then its table and plots.

    python experiments/run.py weighting_ct                   # quick size (2-core CPU, minutes)
    python experiments/run.py weighting_ct --size full       # the GPU-cluster size
    python experiments/run.py weighting_ct --dry-run         # print the exact commands only
    python experiments/run.py weighting_ct weighting=ew,uw trainer.max_epochs=1
    python experiments/run.py --list

Specs live in `experiments/ablations/<name>.yaml`. Runs go to
`<log dir>/ablations/<name>/<size>/{runs,baseline_*}/<job>/`, the report to `.../report/`.
Launching again resumes: finished jobs are skipped, failed or missing ones run (from their
own last.ckpt if they have one). Extra
arguments are Hydra overrides for every run; one naming an axis (or `seed`) replaces it.
Exit status: 0 when every job finished and the report was made, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl.sweeps.commands import Planned, plan_ablation, report_command, shell_line  # noqa: E402
from mtl.sweeps.spec import SIZES, AblationSpec, SpecError  # noqa: E402
from mtl.sweeps.status import summary_lines, sweep_status  # noqa: E402

SPEC_DIR = ROOT / "experiments" / "ablations"
CONF_DIR = ROOT / "conf"


def available() -> list[str]:
    return sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))


def load_spec(name: str) -> AblationSpec:
    path = SPEC_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SpecError(f"no ablation '{name}'; available: {', '.join(available())}")
    return AblationSpec.load(path)


def missing_requirements(spec: AblationSpec) -> list[str]:
    """Config files the spec needs that this checkout lacks (e.g. groups not merged yet)."""
    return [req for req in spec.requires if not (CONF_DIR / req).exists()]


def run_sweep(planned: Planned, env: dict[str, str]) -> int:
    print(f"\n== {planned.sweep.name}: {shell_line(planned.command)}", flush=True)
    start = time.perf_counter()
    code = subprocess.run(planned.command, cwd=ROOT, env=env, check=False).returncode
    print(f"== {planned.sweep.name}: exit {code} after {time.perf_counter() - start:.0f} s")
    return code


def run_report(command: list[str], env: dict[str, str]) -> int:
    if importlib.util.find_spec("mtl.report") is None:
        print(
            "\nmtl.report is not available in this checkout, so no table or plots were made.\n"
            f"Once it is, make them with:\n  {shell_line(command)}",
            file=sys.stderr,
        )
        return 1
    print(f"\n== report: {shell_line(command)}", flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument("ablation", nargs="?", help=f"one of: {', '.join(available())}")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    parser.add_argument("--size", choices=SIZES, default="quick")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=Path(os.environ.get("MTL_ROOT", ROOT)) / "logs",
        help="where ablations/<name>/<size>/ goes (default: logs/)",
    )
    parser.add_argument("--no-report", action="store_true", help="train only")
    parser.add_argument("--list", action="store_true", help="list the ablations and exit")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list or not args.ablation:
        for name in available():
            print(f"{name}: {load_spec(name).description}")
        return 0 if args.list else 2
    spec = load_spec(args.ablation)
    root = args.log_dir.resolve() / "ablations"
    python, train_py = sys.executable, ROOT / "train.py"
    planned = plan_ablation(spec, args.size, root, args.overrides, python, train_py)
    report = report_command(spec, planned, root / spec.name / args.size / "report", python)
    if spec.pending:
        print(f"warning: ablation '{spec.name}' is incomplete: {spec.pending}", file=sys.stderr)
    missing = missing_requirements(spec)
    if args.dry_run:
        for item in planned:
            print(shell_line(item.command))
        print(shell_line(report))
        return 0
    if missing:
        print(
            f"ablation '{spec.name}' needs configs this checkout lacks: "
            f"{', '.join('conf/' + m for m in missing)}",
            file=sys.stderr,
        )
        return 1

    env = {**os.environ, "WANDB_SILENT": os.environ.get("WANDB_SILENT", "true")}
    codes = [run_sweep(item, env) for item in planned]
    print("\n== jobs")
    for item in planned:
        print("\n".join(summary_lines(item.sweep_dir)))
    unfinished = [s for item in planned for s in sweep_status(item.sweep_dir) if s.state != "done"]
    report_code = 0 if args.no_report else run_report(report, env)
    if unfinished or any(codes):
        print(
            f"\n{len(unfinished)} job(s) did not finish; launch the same command again to "
            f"run only those.",
            file=sys.stderr,
        )
        return 1
    return 1 if report_code else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SpecError as error:
        sys.exit(f"error: {error}")
