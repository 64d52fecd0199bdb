"""Benchmark: data-loading throughput vs model throughput -- is the loader ever the bottleneck?

Measures, in one process on the embedded benchmark:

* the data path alone, batches of manifest rows in the training loop's shuffled order from
  (1) the whole feature store held in memory as a float16 tensor (what the training loop does
  for stores under 2 GiB: index, then ``.float()``), (2) ``FeatureStore.batch(rows)`` from the
  store on disk (memory map; the OS page cache is warm after the first pass), and (3) the
  front-end on the fly (``load_audio`` per clip + LogMel), for reference;
* the training step alone (forward + BCE + backward + Adam) per backbone on batches already in
  memory.

The training loop loads synchronously (no worker processes), so a step costs load + model:
the table gives each loader's throughput over the model's (ratio < 1: the loader would be the
bottleneck) and the share of a step the loader would take. Never asserts on time.

    PYTHONPATH=. python bench/loader_vs_model.py [--models small_cnn,cnn14] [--steps 20]
"""
from __future__ import annotations

import argparse

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import numpy as np
import torch
from common import (Stopwatch, add_common_args, add_data_args, apply_common_args, batch_rows, load_data,
                    make_train_step, parse_models, print_header, print_table, rate, read_wav_batch)

from csu_lib.features import LogMel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="all", help="comma-separated backbones, or 'all' (default)")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per backbone")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps / batches first")
    ap.add_argument("--loader-batches", type=int, default=300,
                    help="timed batches per feature loader (memory, store)")
    ap.add_argument("--fly-batches", type=int, default=30, help="timed batches of the on-the-fly front-end")
    ap.add_argument("--rounds", type=int, default=2, help="alternating blocks (model, loaders) per backbone")
    ap.add_argument("--no-channels-last", action="store_true", help="contiguous conv weights")
    add_data_args(ap)
    add_common_args(ap)
    args = ap.parse_args()
    apply_common_args(args)
    models = parse_models(args.models)
    if min(args.steps, args.loader_batches, args.fly_batches, args.rounds) < 1 or args.warmup < 0:
        raise SystemExit("--steps, --loader-batches, --fly-batches and --rounds must be >= 1, --warmup >= 0")

    device = torch.device("cpu")
    config, data, batch = load_data(args)
    fe = config.frontend
    n_samples = int(round(config.data.benchmark.clip_seconds * fe.sample_rate))
    manifest, store = data.manifest, data.store
    n_classes = manifest.n_classes
    n_batches = args.warmup + max(args.loader_batches, args.fly_batches, args.steps)
    rows_all = batch_rows(data.train_idx, batch, n_batches, args.seed)
    from csu_lib.models import DEFAULT_WIDTH

    print_header("data loading vs model throughput", {
        "profile": args.profile, "clips": len(manifest), "train_clips": len(data.train_idx),
        "classes": n_classes, "input": f"{fe.n_mels} mels x {store.batch(rows_all[0][:1]).shape[-1]} frames",
        "batch": batch, "model_steps": args.steps, "loader_batches": args.loader_batches,
        "fly_batches": args.fly_batches, "rounds": args.rounds, "warmup": args.warmup, "channels_last": not args.no_channels_last,
        "models": ",".join(f"{m}@{DEFAULT_WIDTH.get(m, 1.0)}" for m in models), "seed": args.seed})

    # ---- the data path alone
    everything = store.batch(np.arange(len(store))).to(torch.float16)  # the in-memory copy
    logmel = LogMel(fe)

    def from_memory(rows: np.ndarray) -> torch.Tensor:
        return everything[torch.as_tensor(rows)].float()

    def on_the_fly(rows: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return logmel(read_wav_batch(manifest, rows, fe.sample_rate, n_samples))

    loaders = {"memory": (from_memory, args.loader_batches), "store": (store.batch, args.loader_batches),
               "on-the-fly": (on_the_fly, args.fly_batches)}
    for load, _ in loaders.values():  # warm-up (page cache, allocator)
        for i in range(args.warmup):
            load(rows_all[i])
    xs = [from_memory(r) for r in rows_all[:args.warmup + args.steps]]
    ys = [torch.as_tensor(manifest.labels[r], dtype=torch.float32) for r in rows_all[:args.warmup + args.steps]]

    def blocks(n: int) -> list[range]:
        b = np.linspace(args.warmup, args.warmup + n, args.rounds + 1).round().astype(int)
        return [range(b[r], b[r + 1]) for r in range(args.rounds)]

    # Per backbone, model steps and every loader alternate in blocks (--rounds), so each ratio
    # compares throughputs measured side by side while other jobs load the machine alike.
    loader_total = {lname: [0.0, 0] for lname in loaders}  # seconds, batches over all backbones
    table = []
    for name in models:
        step = make_train_step(name, n_classes, fe.n_mels, device=device, seed=args.seed,
                               channels_last=not args.no_channels_last)
        for i in range(args.warmup):
            step(xs[i], ys[i])
        model_sw = Stopwatch(device)
        mine = {lname: Stopwatch(device) for lname in loaders}
        loader_blocks = {lname: blocks(n) for lname, (_, n) in loaders.items()}
        for r, block in enumerate(blocks(args.steps)):
            with model_sw:
                for i in block:
                    step(xs[i], ys[i])
            for lname, (load, _) in (loaders.items() if r % 2 else reversed(loaders.items())):
                with mine[lname]:
                    for i in loader_blocks[lname][r]:
                        load(rows_all[i])
        model_rate = rate(args.steps * batch, model_sw.seconds)
        row = {"model": name, "width": DEFAULT_WIDTH.get(name, 1.0), "model clips/s": model_rate}
        rates = {lname: rate(n * batch, mine[lname].seconds) for lname, (_, n) in loaders.items()}
        for lname, (_, n) in loaders.items():
            loader_total[lname][0] += mine[lname].seconds
            loader_total[lname][1] += n
        for lname, lrate in rates.items():
            row[f"{lname}/model"] = lrate / model_rate
            row[f"{lname} share"] = f"{100 * model_rate / (lrate + model_rate):.1f}%"
        bottleneck = [l for l in ("memory", "store") if rates[l] < model_rate]
        row["cached loader bottleneck?"] = "yes (" + ",".join(bottleneck) + ")" if bottleneck else "no"
        table.append(row)
        print(f"{name}: model {model_rate:.1f} clips/s; loaders (clips/s) memory {rates['memory']:.0f}, "
              f"store {rates['store']:.0f}, on-the-fly {rates['on-the-fly']:.0f}; ratio loader/model: "
              f"memory {row['memory/model']:.1f}x, store {row['store/model']:.1f}x, "
              f"on-the-fly {row['on-the-fly/model']:.2f}x", flush=True)
        del step
    print("\nloaders alone, over all the blocks above:")
    print_table([{"loader": lname, "clips/s": rate(n * batch, sec), "ms/batch": 1e3 * sec / n}
                 for lname, (sec, n) in loader_total.items()], ["loader", "clips/s", "ms/batch"])
    print("\nratio loader/model = loader clips/s over model clips/s (< 1: the loader is the bottleneck); "
          "share = the part of a synchronous step (load + model) spent loading")
    cols = ["model", "width", "model clips/s"]
    for lname in loaders:
        cols += [f"{lname}/model", f"{lname} share"]
    print_table(table, cols + ["cached loader bottleneck?"])


if __name__ == "__main__":
    main()
