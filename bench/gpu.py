"""Benchmark (GPU): training-step throughput of CNN14 and MobileNetV2 at their paper sizes under
fp32, bfloat16 autocast and bfloat16 autocast + channels_last, eager and (``--compile``)
torch.compile, with the achieved model FLOP/s and its fraction of the GPU's peak.

Paper sizes: full width, 527 classes (AudioSet), 64 mels x 1001 frames (10 s clips at 32 kHz,
hop 320: the PANNs 32k front-end, docs/methods.md, section 6), batch 32. Inputs are random log-mel
batches already on the device (the model alone: the front-end and loading are not timed; see
``frontend_cache.py`` and ``loader_vs_model.py``). A training step = forward + BCE (float32) +
backward + Adam, as the training loop does it.

Model FLOPs: the forward pass is counted once per backbone with
``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplications and convolutions;
elementwise work is not counted), and a training step is taken as 3 x forward (backward = 2 x
forward, the usual convention; the optimiser step is not counted), so "achieved" = 3 x forward
FLOPs per batch x steps / seconds. FlopCounterMode's own backward count is printed but not used:
in torch 2.11 it counts the weight gradient of a grouped (depthwise) convolution as if it were
dense, which puts MobileNetV2's backward at ~19 x its forward at full width (CNN14's comes out
at exactly 2 x forward). The fraction
is taken of the GPU's dense bfloat16 tensor-core peak (table below, by device name, or
``--peak-tflops``) for every setting, fp32 included -- fp32 convolutions run on TF32 tensor
cores by PyTorch's default (``torch.backends.cudnn.allow_tf32``), whose peak is half of that.

Without a CUDA device it prints so and exits 0. ``--device cpu --tiny`` runs the same code on
the CPU at toy size (what the tests exercise); CPU numbers say nothing about a GPU. Never
asserts on time.

    python bench/gpu.py [--compile] [--models cnn14,mobilenetv2] [--steps 20] [--peak-tflops 989]
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Optional

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import torch
from common import (Stopwatch, add_common_args, apply_common_args, make_train_step, parse_models,
                    print_header, print_table, random_targets, rate, sync)

#: Dense (no sparsity) bfloat16 tensor-core peak in TFLOP/s from NVIDIA's data sheets, matched
#: against the words of ``torch.cuda.get_device_name`` (all words of a key must appear; the
#: first matching key wins, so variants come before the plain name).
PEAK_BF16_TFLOPS: list[tuple[tuple[str, ...], float]] = [
    (("h100", "pcie"), 756.0),
    (("h100", "nvl"), 835.0),
    (("h100",), 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    (("gh200",), 989.0),
    (("h200", "nvl"), 835.0),
    (("h200",), 989.0),  # SXM
    (("a100",), 312.0),  # SXM and PCIe alike
    (("l40s",), 362.0),
    (("l40",), 181.0),
    (("l4",), 121.0),
    (("a10",), 125.0),  # not the A10G (no such word match)
]

#: Settings: (name, bfloat16 autocast, channels_last).
SETTINGS: dict[str, tuple[bool, bool]] = {
    "fp32": (False, False),
    "bf16": (True, False),
    "bf16+channels_last": (True, True),
}


def peak_tflops(device_name: str) -> Optional[tuple[float, str]]:
    """(peak, the table key that matched) for a GPU name, or None when the table has no entry."""
    words = set(re.split(r"[\s\-_/]+", device_name.lower()))
    for key, peak in PEAK_BF16_TFLOPS:
        if all(w in words for w in key):
            return peak, " ".join(key)
    return None


def count_flops(model: torch.nn.Module, loss_fn: torch.nn.Module, x: torch.Tensor,
                y: torch.Tensor) -> tuple[int, int]:
    """(forward FLOPs, FlopCounterMode's backward FLOPs) of one batch on the eager model; the
    gradients it leaves are cleared. See the module docstring for why only the first is used."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fwd:
        logits = model(x)
    with FlopCounterMode(display=False) as bwd:
        loss_fn(logits.float(), y, None).backward()
    model.zero_grad(set_to_none=True)
    return fwd.get_total_flops(), bwd.get_total_flops()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="cnn14,mobilenetv2", help="comma-separated backbones")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (with --tiny, for tests)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {list(SETTINGS)}")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd models (vs eager)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation included)")
    ap.add_argument("--classes", type=int, default=527)
    ap.add_argument("--mels", type=int, default=64)
    ap.add_argument("--frames", type=int, default=1001, help="1001 = 10 s at 32 kHz, hop 320")
    ap.add_argument("--width", type=float, default=1.0, help="backbone width (1.0: the paper's size)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the device's peak matrix TFLOP/s (default: from the table by device name)")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--tiny", action="store_true",
                    help="toy size (width 1/16, 64 frames, batch 2, <= 2 steps): exercises the code, e.g. on the CPU")
    add_common_args(ap)
    args = ap.parse_args()
    apply_common_args(args)
    if args.tiny:
        args.width, args.frames, args.batch_size = 0.0625, 64, 2
        args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 1)
    models = parse_models(args.models)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    bad = [s for s in settings if s not in SETTINGS]
    if bad or not settings:
        raise SystemExit(f"--settings: unknown {bad or args.settings!r}; known: {', '.join(SETTINGS)}")
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        raise SystemExit("--steps and --batch-size must be >= 1, --warmup >= 0")

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print_header("GPU training throughput", {"device": args.device})
        print("no CUDA device available: GPU benchmark skipped (use --device cpu --tiny to exercise the code)")
        return 0
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = args.cudnn_benchmark

    peak, peak_source = None, "none (pass --peak-tflops)"
    if args.peak_tflops is not None:
        peak, peak_source = args.peak_tflops, "--peak-tflops"
    elif device.type == "cuda":
        found = peak_tflops(torch.cuda.get_device_name(device))
        if found is not None:
            peak, peak_source = found[0], f"table entry '{found[1]}' (dense bf16, NVIDIA data sheet)"

    compiles = [False, True] if args.compile else [False]
    print_header("GPU training throughput", {
        "models": ",".join(models), "width": args.width, "classes": args.classes,
        "input": f"{args.mels} mels x {args.frames} frames", "batch": args.batch_size, "steps": args.steps,
        "warmup": args.warmup, "settings": ",".join(settings), "compile": args.compile,
        "cudnn.benchmark": torch.backends.cudnn.benchmark, "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "peak_tflops": peak if peak is not None else "unknown", "peak_source": peak_source,
        "tiny": args.tiny, "seed": args.seed}, device)

    gen = torch.Generator().manual_seed(args.seed)
    n_distinct = 4  # a few distinct batches, cycled, created once on the device
    xs = [torch.randn(args.batch_size, args.mels, args.frames, generator=gen).mul_(10).sub_(40).to(device)
          for _ in range(n_distinct)]
    ys = [random_targets(args.batch_size, args.classes, gen).to(device) for _ in range(n_distinct)]

    rows = []
    for name in models:
        probe = make_train_step(name, args.classes, args.mels, width=args.width, device=device, seed=args.seed,
                                channels_last=False)
        fwd_flops, counted_bwd = count_flops(probe.model, probe.loss_fn, xs[0], ys[0])
        step_flops = 3 * fwd_flops
        n_params = probe.n_parameters
        del probe
        print(f"{name}: {n_params / 1e6:.2f}M parameters, {fwd_flops / 1e9:.2f} GFLOP forward per batch of "
              f"{args.batch_size} ({fwd_flops / args.batch_size / 1e9:.3f} GFLOP per clip); training step "
              f"taken as 3 x forward = {step_flops / 1e9:.2f} GFLOP (FlopCounterMode's backward: "
              f"{counted_bwd / fwd_flops:.2f} x forward, not used)", flush=True)
        base_rate = None
        for compiled in compiles:
            for setting in settings:
                bf16, channels_last = SETTINGS[setting]
                label = f"{setting}" + (" compiled" if compiled else "")
                row = {"model": name, "setting": setting, "mode": "compile" if compiled else "eager"}
                try:
                    if compiled:
                        torch._dynamo.reset()
                    step = make_train_step(name, args.classes, args.mels, width=args.width, device=device,
                                           seed=args.seed, channels_last=channels_last, bf16=bf16,
                                           compile=compiled)
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    t0 = time.perf_counter()
                    for i in range(args.warmup):
                        step(xs[i % n_distinct], ys[i % n_distinct])
                    sync(device)
                    row["warmup s"] = time.perf_counter() - t0
                    sw = Stopwatch(device)
                    with sw:
                        for i in range(args.steps):
                            step(xs[i % n_distinct], ys[i % n_distinct])
                except torch.cuda.OutOfMemoryError as exc:  # report and go on with the next setting
                    row["clips/s"] = f"out of memory ({str(exc).splitlines()[0][:60]})"
                    rows.append(row)
                    print(f"  {label}: out of memory", flush=True)
                    step = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                clips_s = rate(args.steps * args.batch_size, sw.seconds)
                achieved = step_flops * args.steps / sw.seconds
                base_rate = base_rate or clips_s  # the first setting (fp32 eager by default) is the base
                row.update({"clips/s": clips_s, "ms/step": 1e3 * sw.seconds / args.steps,
                            "speed-up vs first": clips_s / base_rate, "TFLOP/s": achieved / 1e12,
                            "fraction of peak": f"{achieved / 1e12 / peak:.1%}" if peak else "n/a"})
                if device.type == "cuda":
                    row["peak GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
                rows.append(row)
                print(f"  {label}: {clips_s:.1f} clips/s, {row['ms/step']:.1f} ms/step, "
                      f"{row['TFLOP/s']:.2f} TFLOP/s achieved, fraction of peak {row['fraction of peak']}, "
                      f"ratio vs {settings[0]} eager: {row['speed-up vs first']:.2f}x", flush=True)
                del step
                if device.type == "cuda":
                    torch.cuda.empty_cache()

    print(f"\nfraction of peak = model FLOPs per second (3 x counted forward FLOPs per step) / "
          f"{peak if peak else 'unknown'} TFLOP/s ({peak_source}); speed-up vs the first setting of the "
          f"same model ({settings[0]}, eager)")
    cols = ["model", "setting", "mode", "clips/s", "ms/step", "speed-up vs first", "TFLOP/s", "fraction of peak",
            "warmup s"] + (["peak GiB"] if device.type == "cuda" else [])
    print_table(rows, cols)
    return 0


if __name__ == "__main__":
    sys.exit(main())
