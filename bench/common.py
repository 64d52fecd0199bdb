"""Shared pieces of the ``bench/`` scripts: the machine/versions/settings header every script
prints with its numbers, a synchronising timer, the training step they all time, and the
embedded benchmark's data.

Benchmarks measure alternatives side by side in one process and print ratios; nothing here
asserts on time.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

if __package__ in (None, ""):  # run as ``python bench/x.py``: make ``csu_lib`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


# ---------------------------------------------------------------------------------------------
# Header: machine, versions, settings


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: Optional[torch.device] = None) -> dict[str, Any]:
    """Machine and library versions as a flat dict (what :func:`print_header` prints)."""
    import torchaudio

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "numpy": np.__version__,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        idx = device.index if device is not None and device.type == "cuda" and device.index is not None else 0
        info["gpu"] = torch.cuda.get_device_name(idx)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    if device is not None:
        info["device"] = str(device)
    return info


def print_header(title: str, settings: dict[str, Any], device: Optional[torch.device] = None) -> None:
    """Print the benchmark's title, the machine and versions, and its settings (one line each)."""
    info = machine_info(device)
    print(f"== {title}")
    print("machine: " + " | ".join(f"{k} {v}" for k, v in info.items()))
    print("settings: " + " | ".join(f"{k} {v}" for k, v in settings.items()))
    sys.stdout.flush()


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--seed``, shared by every script."""
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)


def apply_common_args(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def parse_models(text: str) -> list[str]:
    """``"all"`` or a comma-separated list of registered backbone names."""
    from csu_lib.models import MODELS

    names = list(MODELS) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise SystemExit(f"--models: unknown backbone(s) {unknown or text!r}; known: {', '.join(MODELS)}")
    return names


# ---------------------------------------------------------------------------------------------
# Timing


def sync(device: torch.device) -> None:
    """Wait for queued device work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulates wall time of code blocks, synchronising the device around each one.

    >>> sw = Stopwatch(torch.device("cpu"))
    >>> with sw: pass
    >>> sw.count
    1
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0
        self.count = 0
        self._t0 = 0.0

    def __enter__(self) -> "Stopwatch":
        sync(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        sync(self.device)
        self.seconds += time.perf_counter() - self._t0
        self.count += 1


def rate(n_items: float, seconds: float) -> float:
    """Items per second (inf for a zero duration)."""
    return n_items / seconds if seconds > 0 else float("inf")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A Markdown table (pasteable into the README)."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# The training step every script times


@dataclass
class TrainStep:
    """One training step as the training loop does it: forward (optionally under bfloat16
    autocast), BCE loss in float32, ``zero_grad``, backward, Adam step.

    Built by :func:`make_train_step`; call it with a feature batch ``x`` (B, n_mels, T) and
    targets ``y`` (B, C) already on the device.
    """

    model: torch.nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, or its torch.compile'd version
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    bf16: bool = False

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.forward(x)
        loss = self.loss_fn(logits.float(), y, None)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def make_train_step(name: str, n_classes: int, n_mels: int, *, width: Optional[float] = None,
                    device: torch.device = torch.device("cpu"), channels_last: bool = True,
                    bf16: bool = False, compile: bool = False, lr: float = 1e-3,
                    seed: int = 0) -> TrainStep:
    """A seeded backbone (``width=None``: its CPU default width, ``models.DEFAULT_WIDTH``) with
    the BCE loss and Adam, in training mode, as the training loop builds them."""
    from csu_lib.config import LossConfig, ModelConfig
    from csu_lib.losses import build_loss
    from csu_lib.models import DEFAULT_WIDTH, build_model

    width = DEFAULT_WIDTH.get(name, 1.0) if width is None else width
    torch.manual_seed(seed)
    model = build_model(ModelConfig(name=name, width=width), n_classes, n_mels).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    loss_fn = build_loss(LossConfig(name="bce"), n_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    forward = torch.compile(model) if compile else model
    return TrainStep(model, forward, loss_fn, optimizer, device, bf16)


def random_targets(n: int, n_classes: int, generator: torch.Generator, density: float = 0.05) -> torch.Tensor:
    """Multi-hot float targets (each entry positive with probability ``density``)."""
    return (torch.rand(n, n_classes, generator=generator) < density).float()


# ---------------------------------------------------------------------------------------------
# Data: the embedded benchmark at a profile's size


def add_data_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--profile", default="quick", choices=("smoke", "quick", "paper"),
                    help="embedded-benchmark size and training batch size of this profile")
    ap.add_argument("--clips-per-class", type=int, default=None,
                    help="override the profile's clips per class (a smaller benchmark)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the profile's training batch size")
    ap.add_argument("--frontend", default=None,
                    help="front-end preset (csu_lib.config.FRONTEND_PRESETS, e.g. panns32k); default: the profile's")


def load_data(args: argparse.Namespace):
    """(RunConfig, PreparedData, batch size) of the embedded benchmark at ``args.profile``'s size;
    generates the audio and builds the feature cache on first use (``$CSU_DATA_DIR``,
    ``$CSU_CACHE_DIR``)."""
    from csu_lib.core.errors import ConfigError
    from csu_lib.study import run_config
    from csu_lib.pipeline import prepare_data

    bench = {"clips_per_class": args.clips_per_class} if args.clips_per_class else {}
    try:
        config = run_config(args.profile, device="cpu", benchmark=bench or None,
                            frontend=getattr(args, "frontend", None))
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    data = prepare_data(config, progress=False)
    batch = args.batch_size or config.train.batch_size
    return config, data, batch


def read_wav_batch(manifest, rows: np.ndarray, sample_rate: int, n_samples: int) -> torch.Tensor:
    """The clips of manifest ``rows`` as a float32 waveform tensor (B, n_samples), read with
    :func:`csu_lib.data.audio.load_audio` as the feature build reads them (offset column honoured)."""
    from csu_lib.data.audio import load_audio

    has_offset = "offset" in manifest.clips.columns
    return torch.from_numpy(np.stack([
        load_audio(manifest.audio_path(int(i)), sample_rate, n_samples,
                   offset_seconds=float(manifest.clips.at[int(i), "offset"]) if has_offset else 0.0)
        for i in rows]))


def batch_rows(train_idx: np.ndarray, batch_size: int, n_batches: int, seed: int) -> list[np.ndarray]:
    """``n_batches`` batches of manifest rows drawn as the training loop does (a seeded
    permutation of the training clips, cut into batches; repeated when it runs out)."""
    gen = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < n_batches:
        order = train_idx[gen.permutation(len(train_idx))]
        for s in range(0, len(order) - batch_size + 1, batch_size):
            out.append(order[s:s + batch_size])
            if len(out) == n_batches:
                break
        if batch_size > len(order):
            raise SystemExit(f"--batch-size {batch_size} exceeds the {len(order)} training clips")
    return out
