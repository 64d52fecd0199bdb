"""Benchmark: training fed from the cached log-mel features vs computing the front-end on the fly.

Per backbone, the same training steps (forward + BCE + backward + Adam, the profile's batch
size, channels_last as the training loop) on the same batches of the embedded benchmark, fed
(a) from the feature cache (``FeatureStore.batch(rows)``, the on-disk store) or (b) on the fly:
the batch's WAV files read with ``load_audio`` and the LogMel front-end computed every step.
The two feeds alternate in blocks (``--rounds``) in one process, so load drift from other jobs
hits both alike. Prints clips/s for each, the ratio cache / on-the-fly and where the
on-the-fly time goes. Never asserts on time.

    PYTHONPATH=. python bench/frontend_cache.py [--models small_cnn,cnn6] [--steps 30] [--rounds 3]
                                                [--source-rate 44100]

With ``--source-rate 44100`` the on-the-fly feed reads copies of the batches' clips written at
44.1 kHz (as ESC-50 and FSD50K ship) and resamples them to the front-end's 16 kHz, as it would on
those datasets; the default reads the benchmark's own 16 kHz files, the cheapest possible
on-the-fly feed.
"""
from __future__ import annotations

import argparse

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import numpy as np
import torch
from common import (Stopwatch, add_common_args, add_data_args, apply_common_args, batch_rows, load_data,
                    make_train_step, parse_models, print_header, print_table, rate, read_wav_batch)

from csu_lib.data.audio import load_audio
from csu_lib.features import LogMel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="all", help="comma-separated backbones, or 'all' (default)")
    ap.add_argument("--steps", type=int, default=30, help="timed training steps per feed and backbone")
    ap.add_argument("--rounds", type=int, default=3, help="alternating blocks the steps are split into")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per feed first")
    ap.add_argument("--no-channels-last", action="store_true", help="contiguous conv weights")
    ap.add_argument("--source-rate", type=int, default=None,
                    help="rate of the audio files the on-the-fly feed reads (default: the benchmark's 16000; "
                         "44100 = as ESC-50/FSD50K ship, so the feed also resamples)")
    add_data_args(ap)
    add_common_args(ap)
    args = ap.parse_args()
    apply_common_args(args)
    models = parse_models(args.models)
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0:
        raise SystemExit("--steps and --rounds must be >= 1, --warmup >= 0")

    device = torch.device("cpu")
    config, data, batch = load_data(args)
    fe = config.frontend
    clip_seconds = config.data.benchmark.clip_seconds
    n_samples = int(round(clip_seconds * fe.sample_rate))
    logmel = LogMel(fe).to(device)
    manifest, store = data.manifest, data.store
    n_classes = manifest.n_classes
    rows_all = batch_rows(data.train_idx, batch, args.warmup + args.steps, args.seed)
    labels = [torch.as_tensor(manifest.labels[r], dtype=torch.float32) for r in rows_all]
    from csu_lib.models import DEFAULT_WIDTH

    print_header("front-end: feature cache vs on the fly (training steps)", {
        "profile": args.profile, "clips": len(manifest), "train_clips": len(data.train_idx),
        "classes": n_classes, "clip_s": clip_seconds, "frontend": f"{fe.name} sr {fe.sample_rate} n_fft {fe.n_fft} "
        f"hop {fe.hop_length} mels {fe.n_mels}", "batch": batch, "steps_per_feed": args.steps,
        "source_rate": args.source_rate or config.data.benchmark.sample_rate, "rounds": args.rounds, "warmup": args.warmup, "channels_last": not args.no_channels_last,
        "models": ",".join(f"{m}@{DEFAULT_WIDTH.get(m, 1.0)}" for m in models), "seed": args.seed,
        "cache_feed": "FeatureStore.batch(rows) (float16 store on disk -> float32)",
        "on_the_fly_feed": "load_audio per clip + LogMel per batch (no grad)"})

    def feed_cache(rows: np.ndarray, sw: dict) -> torch.Tensor:
        with sw["load"]:
            return store.batch(rows)

    source_rate = args.source_rate or config.data.benchmark.sample_rate
    copies = _source_copies(manifest, np.unique(np.concatenate(rows_all)), source_rate, clip_seconds) \
        if source_rate != config.data.benchmark.sample_rate else None

    def feed_fly(rows: np.ndarray, sw: dict) -> torch.Tensor:
        with sw["read"]:
            if copies is None:
                wav = read_wav_batch(manifest, rows, fe.sample_rate, n_samples)
            else:
                wav = torch.from_numpy(np.stack([load_audio(copies[int(i)], fe.sample_rate, n_samples) for i in rows]))
        with sw["logmel"], torch.no_grad():
            return logmel(wav)

    results = []
    for name in models:
        step = make_train_step(name, n_classes, fe.n_mels, device=device, seed=args.seed,
                               channels_last=not args.no_channels_last)
        sws = {feed: {k: Stopwatch(device) for k in ("total", "load", "read", "logmel", "step")}
               for feed in ("cache", "fly")}
        feeders = {"cache": feed_cache, "fly": feed_fly}

        def run(feed: str, indices: range, timed: bool, step=step) -> None:
            sw = sws[feed] if timed else {k: Stopwatch(device) for k in sws[feed]}
            for i in indices:
                with sw["total"]:
                    x = feeders[feed](rows_all[i], sw)
                    with sw["step"]:
                        step(x, labels[i])

        for feed in ("cache", "fly"):  # warm-up both paths (allocator, oneDNN primitives, page cache)
            run(feed, range(args.warmup), timed=False)
        bounds = np.linspace(args.warmup, args.warmup + args.steps, args.rounds + 1).round().astype(int)
        for r in range(args.rounds):
            block = range(bounds[r], bounds[r + 1])
            for feed in (("cache", "fly") if r % 2 == 0 else ("fly", "cache")):
                run(feed, block, timed=True)
        c, f = sws["cache"], sws["fly"]
        n_clips = args.steps * batch
        row = {"model": name, "width": DEFAULT_WIDTH.get(name, 1.0), "params": step.n_parameters,
               "cache clips/s": rate(n_clips, c["total"].seconds),
               "on-the-fly clips/s": rate(n_clips, f["total"].seconds),
               "ratio cache/on-the-fly": f["total"].seconds / c["total"].seconds,
               "step ms": 1e3 * (c["step"].seconds + f["step"].seconds) / (2 * args.steps),
               "cache read ms": 1e3 * c["load"].seconds / args.steps,
               "wav read ms": 1e3 * f["read"].seconds / args.steps,
               "log-mel ms": 1e3 * f["logmel"].seconds / args.steps}
        results.append(row)
        print(f"{name}: cache {row['cache clips/s']:.1f} clips/s, on the fly {row['on-the-fly clips/s']:.1f} "
              f"clips/s, ratio cache/on-the-fly: {row['ratio cache/on-the-fly']:.2f}x", flush=True)
        del step

    print("\nper batch of", batch, "clips (ms are means per training step):")
    print_table(results, ["model", "width", "params", "cache clips/s", "on-the-fly clips/s",
                          "ratio cache/on-the-fly", "step ms", "cache read ms", "wav read ms", "log-mel ms"])


def _source_copies(manifest, rows: np.ndarray, rate: int, clip_seconds: float) -> dict[int, str]:
    """The clips of ``rows`` rewritten at ``rate`` into a temporary folder: {row: path}."""
    import atexit
    import shutil
    import tempfile

    from csu_lib.data.audio import write_wav

    folder = tempfile.mkdtemp(prefix="csu-bench-source-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    n = int(round(clip_seconds * rate))
    paths = {}
    for i in rows:
        paths[int(i)] = f"{folder}/{int(i)}.wav"
        write_wav(paths[int(i)], load_audio(manifest.audio_path(int(i)), rate, n), rate)
    return paths


if __name__ == "__main__":
    main()
