"""bf16-mixed against fp32: one training step of the default CT network in each precision,
measured side by side, and what `trainer.precision=auto` picks on this machine.

    .venv/bin/python benchmarks/precision.py
    .venv/bin/python benchmarks/precision.py --device cuda --batch-size 64

Where bf16 is native (Ampere+ GPUs, CPUs with AVX512-BF16 or AMX) bf16 should be faster;
where oneDNN emulates it (AVX2-only CPUs) it is many times slower, which is why `auto`
exists. Steps are forward + backward + AdamW on a fixed random batch (`architectures.py`'s
`Candidate`), the two precisions interleaved step by step; the step time is the median.
The last line is `ratio: <bf16-mixed s/step / 32-true s/step>`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import _common
import torch
from architectures import Candidate

from mtl.training.precision import device_type_of, native_bf16, resolve_precision

PRECISIONS = ("32-true", "bf16-mixed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="ct_default", help="the network's experiment")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/mtl-precision"))
    _common.add_device_args(parser)
    _common.add_clock_arg(parser)
    args = parser.parse_args()
    _common.setup_process(args)
    torch.manual_seed(0)
    args.decoder = "unet"
    args.override = [f"experiment={args.experiment}", *args.override]
    built = {}
    for precision in PRECISIONS:
        one = copy.copy(args)
        one.precision = precision
        built[precision] = Candidate("hps", "unet", one)
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for step in range(args.warmup + args.steps):
        for precision in PRECISIONS if step % 2 == 0 else PRECISIONS[::-1]:
            seconds = built[precision].step()
            if step >= args.warmup:
                times[precision].append(seconds)
    device = device_type_of(args.device)
    print(
        f"# experiment={args.experiment}, input 1x{args.image_size}x{args.image_size}, "
        f"batch {args.batch_size}, {_common.describe_device(args.device)}, "
        f"torch {torch.__version__}"
    )
    print(
        f"# native bf16 here: {'yes' if native_bf16(device) else 'no'}; "
        f"trainer.precision=auto picks {resolve_precision('auto', args.device)}"
    )
    print(f"# median of {args.steps} steps after {args.warmup}, precisions interleaved")
    print("| precision | s/step | spread | x 32-true |")
    print("|---|---:|---:|---:|")
    medians = {p: statistics.median(t) for p, t in times.items()}
    for precision in PRECISIONS:
        ratio = medians[precision] / medians["32-true"]
        spread = _common.spread_pct(times[precision])
        print(f"| {precision} | {medians[precision]:.3f} | {spread} | {ratio:.2f}x |", flush=True)
    print(f"ratio: {medians['bf16-mixed'] / medians['32-true']:.3f}")


if __name__ == "__main__":
    main()
