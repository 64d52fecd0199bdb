"""Benchmark: one 2-D loss surface evaluated batched (torch.vmap over stacked perturbed
parameter sets, :func:`csu_lib.analysis.landscape.loss_surface_2d`) vs one point at a time
(:func:`csu_lib.analysis.landscape.loss_surface_2d_pointwise`), in one process, on the same model, data
and directions. Prints the machine, the settings, both times, their ratio and the largest
difference between the two surfaces. Never asserts on time.

    PYTHONPATH=. python bench/landscape_batching.py [--grid 9] [--clips 64] [--batch-points 16]
"""
from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import numpy as np
import torch
from common import add_common_args, apply_common_args, print_header, sync

from csu_lib.analysis import landscape as L
from csu_lib.losses import CSULoss
from csu_lib.models import SmallCNN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", type=int, default=9, help="points per axis (grid x grid surface)")
    ap.add_argument("--span", type=float, default=1.0, help="alpha, beta in [-span, span]")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32, help="clips per batch")
    ap.add_argument("--batch-points", type=int, default=16, help="surface points per vmap call")
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--mels", type=int, default=64)
    ap.add_argument("--frames", type=int, default=101, help="101 frames = 1 s at hop 160 / 16 kHz")
    ap.add_argument("--width", type=float, default=1.0, help="SmallCNN width")
    ap.add_argument("--device", default="cpu")
    add_common_args(ap)
    args = ap.parse_args()
    apply_common_args(args)
    device = torch.device(args.device)
    model = SmallCNN(args.classes, n_mels=args.mels, width=args.width).to(device)
    with torch.no_grad():  # BatchNorm statistics as after training (not the identity defaults)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    loss = CSULoss(args.classes).to(device)
    with torch.no_grad():
        loss.s.uniform_(-1.0, 1.0)
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(args.clips, args.mels, args.frames, generator=g).to(device)
    y = (torch.rand(args.clips, args.classes, generator=g) < 0.05).float().to(device)
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size]) for i in range(0, args.clips, args.batch_size)]
    dirs = [L.filter_normalised_direction(model, g) for _ in range(2)]
    axis = np.linspace(-args.span, args.span, args.grid)

    n_params = sum(p.numel() for p in model.parameters())
    print_header("landscape: batched (vmap) vs pointwise loss surface", {
        "model": f"SmallCNN width {args.width} ({n_params} parameters, perturbed: "
                 f"{len(L.perturbed_parameter_names(model))} conv/linear weights)",
        "classes": args.classes, "input": f"{args.mels}x{args.frames}",
        "clips": f"{args.clips} in {len(batches)} batches of <= {args.batch_size}", "loss": "CSU (s fixed)",
        "surface": f"{args.grid}x{args.grid} = {args.grid ** 2} points", "batch_points": args.batch_points,
        "seed": args.seed}, device)

    # one warm-up point each (first-call allocations, vmap tracing of the batching rules)
    L.loss_surface_2d(model, loss, batches, dirs, axis[:1], axis[:1], batch_points=args.batch_points)
    L.loss_surface_2d_pointwise(model, loss, batches, dirs, axis[:1], axis[:1])
    sync(device)
    t0 = time.perf_counter()
    batched = L.loss_surface_2d(model, loss, batches, dirs, axis, axis, batch_points=args.batch_points)
    sync(device)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    pointwise = L.loss_surface_2d_pointwise(model, loss, batches, dirs, axis, axis)
    sync(device)
    t_pointwise = time.perf_counter() - t0
    rel = np.max(np.abs(batched - pointwise) / np.abs(pointwise))
    print(f"batched:   {t_batched:8.3f} s  ({1e3 * t_batched / axis.size ** 2:.1f} ms/point)")
    print(f"pointwise: {t_pointwise:8.3f} s  ({1e3 * t_pointwise / axis.size ** 2:.1f} ms/point)")
    print(f"ratio pointwise / batched: {t_pointwise / t_batched:.2f}x")
    print(f"max relative difference between the surfaces: {rel:.2e}; loss range "
          f"[{batched.min():.4f}, {batched.max():.4f}]")


if __name__ == "__main__":
    main()
