"""Benchmark: training steps with conv weights in channels_last vs contiguous memory format.

Per backbone (at its CPU default width), two identically seeded models train on the same random
log-mel batches (the quick profile's batch and input size: 64 mels x 101 frames), one in each
memory format; the two alternate in blocks (``--rounds``) in one process so load drift hits both
alike. Prints clips/s for each and the ratio channels_last / contiguous (> 1: channels_last is
faster), which is what ``TrainConfig.channels_last`` (default on) buys. Never asserts on time.

    PYTHONPATH=. python bench/channels_last.py [--models small_cnn,cnn14] [--steps 20] [--device cpu]
"""
from __future__ import annotations

import argparse

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import numpy as np
import torch
from common import (Stopwatch, add_common_args, apply_common_args, make_train_step, parse_models, print_header,
                    print_table, random_targets, rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="small_cnn,cnn6,cnn10,cnn14,mobilenetv2",
                    help="comma-separated backbones, or 'all'")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per format and backbone")
    ap.add_argument("--rounds", type=int, default=2, help="alternating blocks the steps are split into")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16, help="default: the quick profile's 16")
    ap.add_argument("--frames", type=int, default=101, help="101 frames = 1 s at hop 160 / 16 kHz")
    ap.add_argument("--mels", type=int, default=64)
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    add_common_args(ap)
    args = ap.parse_args()
    apply_common_args(args)
    models = parse_models(args.models)
    if min(args.steps, args.rounds) < 1 or args.warmup < 0:
        raise SystemExit("--steps and --rounds must be >= 1, --warmup >= 0")
    device = torch.device(args.device)
    from csu_lib.models import DEFAULT_WIDTH

    print_header("channels_last vs contiguous (training steps)", {
        "batch": args.batch_size, "input": f"{args.mels} mels x {args.frames} frames", "classes": args.classes,
        "steps": args.steps, "rounds": args.rounds, "warmup": args.warmup, "device": str(device),
        "models": ",".join(f"{m}@{DEFAULT_WIDTH.get(m, 1.0)}" for m in models), "seed": args.seed})
    gen = torch.Generator().manual_seed(args.seed)
    n = args.warmup + args.steps
    xs = [torch.randn(args.batch_size, args.mels, args.frames, generator=gen).to(device) for _ in range(n)]
    ys = [random_targets(args.batch_size, args.classes, gen).to(device) for _ in range(n)]
    bounds = np.linspace(args.warmup, n, args.rounds + 1).round().astype(int)
    table = []
    for name in models:
        steps = {fmt: make_train_step(name, args.classes, args.mels, device=device, seed=args.seed,
                                      channels_last=fmt == "channels_last") for fmt in ("contiguous", "channels_last")}
        watches = {fmt: Stopwatch(device) for fmt in steps}
        for fmt, step in steps.items():
            for i in range(args.warmup):
                step(xs[i], ys[i])
        for r in range(args.rounds):
            order = ("contiguous", "channels_last") if r % 2 == 0 else ("channels_last", "contiguous")
            for fmt in order:
                with watches[fmt]:
                    for i in range(bounds[r], bounds[r + 1]):
                        steps[fmt](xs[i], ys[i])
        clips = args.steps * args.batch_size
        row = {"model": name, "width": DEFAULT_WIDTH.get(name, 1.0),
               "contiguous clips/s": rate(clips, watches["contiguous"].seconds),
               "channels_last clips/s": rate(clips, watches["channels_last"].seconds),
               "ratio channels_last/contiguous": watches["contiguous"].seconds / watches["channels_last"].seconds}
        table.append(row)
        print(f"{name}: ratio channels_last/contiguous: {row['ratio channels_last/contiguous']:.2f}x", flush=True)
    print_table(table, ["model", "width", "contiguous clips/s", "channels_last clips/s",
                        "ratio channels_last/contiguous"])


if __name__ == "__main__":
    main()
