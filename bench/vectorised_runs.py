"""Benchmark: N runs of one small backbone trained one after another vs stacked into one
vectorised model (``csu_lib.training.StackedRuns``, what ``csu sweep --vectorise N`` uses).

Both sides do the same work per round: one training step (forward, loss, backward, Adam) of
each of N runs on its own batch (the quick profile's batch and input size, random log-mel
batches). Sequential = N separately built models, each as the training loop builds it
(channels_last, its own Adam); vectorised = the same N initial models stacked, one vmapped step.
The two alternate in blocks (``--rounds``) in one process. Prints runs x steps per second for
each and the ratio vectorised / sequential (> 1: stacking is faster), per N. Never asserts.

    PYTHONPATH=. python bench/vectorised_runs.py [--runs 2,4,8] [--model small_cnn] [--steps 10]
                                                 [--device cuda] [--bf16]
"""
from __future__ import annotations

import argparse

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import numpy as np
import torch
from common import Stopwatch, add_common_args, apply_common_args, print_header, print_table, random_targets, rate

from csu_lib.config import LossConfig, ModelConfig, TrainConfig
from csu_lib.losses import build_loss
from csu_lib.models import DEFAULT_WIDTH, build_model
from csu_lib.training import StackedRuns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="2,4,8", help="comma-separated numbers of runs N")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--width", type=float, default=None, help="default: the model's CPU width (models.DEFAULT_WIDTH)")
    ap.add_argument("--loss", default="csu", choices=("bce", "csu"))
    ap.add_argument("--steps", type=int, default=10, help="timed rounds (one step of every run) per side")
    ap.add_argument("--rounds", type=int, default=2, help="alternating blocks the steps are split into")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16, help="default: the quick profile's 16")
    ap.add_argument("--frames", type=int, default=101, help="101 frames = 1 s at hop 160 / 16 kHz")
    ap.add_argument("--mels", type=int, default=64)
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast on both sides (CUDA only)")
    add_common_args(ap)
    args = ap.parse_args()
    apply_common_args(args)
    try:
        counts = [int(v) for v in args.runs.split(",")]
    except ValueError:
        raise SystemExit(f"--runs must be comma-separated integers, got {args.runs!r}") from None
    if min(counts) < 1 or min(args.steps, args.rounds) < 1 or args.warmup < 0:
        raise SystemExit("--runs and --steps, --rounds must be >= 1, --warmup >= 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is available")
    width = DEFAULT_WIDTH.get(args.model, 1.0) if args.width is None else args.width
    amp = args.bf16 and device.type == "cuda"
    print_header("N runs: sequential vs vectorised (training steps)", {
        "model": f"{args.model}@{width}", "loss": args.loss, "batch": args.batch_size,
        "input": f"{args.mels} mels x {args.frames} frames", "classes": args.classes, "runs": args.runs,
        "steps": args.steps, "rounds": args.rounds, "warmup": args.warmup, "device": str(device), "bf16": amp,
        "seed": args.seed}, device)
    train = TrainConfig(lr=1e-3, device=str(device))
    loss_cfg = LossConfig(name=args.loss)
    gen = torch.Generator().manual_seed(args.seed)
    table = []
    for n in counts:
        total = args.warmup + args.steps
        xs = [torch.randn(n, args.batch_size, args.mels, args.frames, generator=gen).to(device) for _ in range(total)]
        ys = [torch.stack([random_targets(args.batch_size, args.classes, gen) for _ in range(n)]).to(device)
              for _ in range(total)]
        models, losses = [], []
        for i in range(n):
            torch.manual_seed(args.seed + i)
            models.append(build_model(ModelConfig(name=args.model, width=width), args.classes, args.mels).to(device))
            losses.append(build_loss(loss_cfg, args.classes).to(device))
        stack = StackedRuns(models, losses, train)
        models = [m.to(memory_format=torch.channels_last).train() for m in models]
        optims = [torch.optim.Adam(list(m.parameters()) + list(lf.parameters()), lr=train.lr)
                  for m, lf in zip(models, losses)]

        def sequential(i: int) -> None:
            for k, (model, loss_fn, opt) in enumerate(zip(models, losses, optims)):
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(xs[i][k])
                loss = loss_fn(logits.float(), ys[i][k], None)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        def vectorised(i: int) -> None:
            stack.step(xs[i], ys[i], None, amp=amp)

        sides = {"sequential": sequential, "vectorised": vectorised}
        watches = {side: Stopwatch(device) for side in sides}
        for fn in sides.values():
            for i in range(args.warmup):
                fn(i)
        bounds = np.linspace(args.warmup, total, args.rounds + 1).round().astype(int)
        for r in range(args.rounds):
            for side in (("sequential", "vectorised") if r % 2 == 0 else ("vectorised", "sequential")):
                with watches[side]:
                    for i in range(bounds[r], bounds[r + 1]):
                        sides[side](i)
        seq_s, vec_s = watches["sequential"].seconds, watches["vectorised"].seconds
        row = {"runs": n, "sequential run-steps/s": rate(n * args.steps, seq_s),
               "vectorised run-steps/s": rate(n * args.steps, vec_s), "ratio vectorised/sequential": seq_s / vec_s}
        table.append(row)
        print(f"N={n}: sequential {row['sequential run-steps/s']:.1f}, vectorised {row['vectorised run-steps/s']:.1f} "
              f"run-steps/s, ratio vectorised/sequential: {row['ratio vectorised/sequential']:.2f}x", flush=True)
    print()
    print_table(table, ["runs", "sequential run-steps/s", "vectorised run-steps/s", "ratio vectorised/sequential"])


if __name__ == "__main__":
    main()
