"""The training loop: one :class:`~csu_lib.config.RunConfig` in, one run record out.

- Seeds: ``torch.manual_seed(seed)`` before the model is built; the batch order of epoch e
  comes from its own generator seeded by (seed, e); the global torch RNG (dropout) is saved
  in every checkpoint. Together these make a resumed run on the CPU bit-identical to an
  uninterrupted one.
- Optimiser: Adam or AdamW; the CSU parameters ``s`` form their own group (no weight decay,
  optionally their own learning rate) and are projected into their clamp range after each step.
- Mixed precision (bfloat16 autocast) on CUDA only; the loss is always computed in float32.
- The per-class ``s`` is written into a device buffer every step (no host synchronisation in
  the step) and flushed to ``sigma.npy`` once per epoch.
- Early stopping on validation mAP; the best weights are kept and evaluated on the test split.
- A checkpoint after every epoch; an interrupted run (killed, crashed, Ctrl-C) resumes from the
  last completed epoch when the same command is run again.
- Under ``torchrun`` (``WORLD_SIZE`` > 1) the same loop runs with DistributedDataParallel:
  ``train.batch_size`` is the global batch, each rank trains on its share of it, the gradients of
  the model and of ``s`` are averaged over ranks, and rank 0 alone writes the run directory
  (:mod:`csu_lib.distributed`). Without torchrun nothing of this is involved.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed
from . import metrics as M
from .config import RunConfig
from .corruption import CorruptionResult, corrupt_labels
from .datasets import load_dataset
from .errors import ConfigError
from .evaluation import final_metrics
from .features import FeatureLoader, FeatureStore, build_features
from .io import atomic_save_npy, atomic_write_json
from .losses import build_loss
from .methods import Method, build_method
from .manifest import Manifest
from .models import build_model, count_parameters
from .records import (RunRecord, finalize, is_complete, load_checkpoint, load_run, prepare_run_dir,
                      save_torch, versions)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(name)


@dataclass
class PreparedData:
    """What a run trains on: the manifest, its features and the (possibly corrupted) labels."""

    manifest: Manifest
    store: FeatureStore
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    train_labels: np.ndarray  # (n_train, C) after corruption
    corruption: Optional[CorruptionResult]
    skipped: list = field(default_factory=list)  # clips dropped by data.skip_unreadable, with why


def prepare_data(config: RunConfig, *, data_dir: Optional[str | os.PathLike] = None,
                 cache_dir: Optional[str | os.PathLike] = None, progress: bool = True,
                 manifest: Optional[Manifest] = None) -> PreparedData:
    """Dataset -> corruption -> features (cached). Validation and test labels stay clean."""
    manifest = manifest if manifest is not None else load_dataset(config.data, data_dir, progress=progress)
    skipped: list[dict] = []
    if config.data.skip_unreadable:
        from .loaders import validate_audio

        checked = validate_audio(manifest, skip_unreadable=True)
        manifest, skipped = checked["manifest"], checked["skipped"]
    clip_seconds = config.data.clip_seconds or (
        config.data.benchmark.clip_seconds if config.data.dataset == "embedded" else None)
    if clip_seconds is None:
        raise ConfigError(f"data.clip_seconds must be set for dataset {config.data.dataset!r}")
    store = build_features(manifest, config.frontend, clip_seconds, cache_dir=cache_dir, progress=progress)
    train_idx, val_idx, test_idx = (manifest.split_indices(s) for s in ("train", "val", "test"))
    clean = manifest.labels[train_idx]
    corruption = None
    train_labels = clean.copy()
    if config.corruption.published:
        if config.data.dataset != "freegen50":
            raise ConfigError("corruption.published applies to the freegen50 dataset only "
                              f"(data.dataset is {config.data.dataset!r})")
        if skipped:
            raise ConfigError("corruption.published cannot be combined with skipped clips "
                              "(the published files list every training clip)")
        from .loaders import load_freegen50_noisy

        corruption = load_freegen50_noisy(config.data.root, config.corruption.kind, config.corruption.ratio,
                                          clean_manifest=manifest)
        train_labels = corruption.labels
    elif config.corruption.kind != "none" and config.corruption.ratio > 0:
        corruption = corrupt_labels(clean, config.corruption, similarity=manifest.similarity,
                                    class_names=manifest.class_names)
        train_labels = corruption.labels
    return PreparedData(manifest, store, train_idx, val_idx, test_idx, train_labels, corruption, skipped)


@torch.no_grad()
def predict(model: torch.nn.Module, feats: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray,
            batch_size: int, device: torch.device) -> np.ndarray:
    """Sigmoid scores (len(rows), C) in eval mode."""
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        x = feats(rows[start:start + batch_size])
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(torch.sigmoid(model(x).float()).cpu())
    return torch.cat(out).numpy()


def _evaluate(model, feats, data: PreparedData, split: str, config: RunConfig, device) -> dict:
    rows = {"val": data.val_idx, "test": data.test_idx}[split]
    scores = predict(model, feats, rows, config.train.eval_batch_size, device)
    return M.evaluate(scores, data.manifest.labels[rows])


def _make_optimizer(config: RunConfig, model: torch.nn.Module, loss: torch.nn.Module) -> torch.optim.Optimizer:
    groups = [{"params": list(model.parameters()), "weight_decay": config.train.weight_decay}]
    loss_params = list(loss.parameters())
    if loss_params:
        groups.append({"params": loss_params, "weight_decay": 0.0,
                       "lr": config.loss.csu_lr or config.train.lr})
    cls = torch.optim.AdamW if config.train.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=config.train.lr)


StepHook = Callable[[int, int], None]


def train_run(config: RunConfig, run_dir: str | os.PathLike, *, data: Optional[PreparedData] = None,
              data_dir: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
              progress: bool = True, on_step: Optional[StepHook] = None) -> RunRecord:
    """Train (or resume, or skip if complete) one run and return its record.

    ``on_step(epoch, step)`` is called before every optimiser step (tests use it to simulate a
    crash mid-epoch).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every worker calls this with the same arguments and
    the run is trained with DistributedDataParallel (see :mod:`csu_lib.distributed`):
    ``train.batch_size`` is the global batch, rank 0 alone writes the run directory, and every
    rank returns the record.
    """
    ctx = distributed.from_env(config.train.device)
    try:
        return _train_run(config, run_dir, ctx, data=data, data_dir=data_dir, cache_dir=cache_dir,
                          progress=progress, on_step=on_step)
    finally:
        distributed.shutdown(ctx)


def _train_run(config: RunConfig, run_dir: str | os.PathLike, ctx: Optional[distributed.DistContext], *,
               data: Optional[PreparedData], data_dir: Optional[str | os.PathLike],
               cache_dir: Optional[str | os.PathLike], progress: bool, on_step: Optional[StepHook]) -> RunRecord:
    """The body of :func:`train_run`; ``ctx`` is None for a one-process run."""
    main = ctx is None or ctx.is_main  # the process that writes files
    if ctx is None:
        run_dir = prepare_run_dir(run_dir, config)  # refuses a directory of another configuration
        if is_complete(run_dir):
            return load_run(run_dir)
    else:
        run_dir, complete = ctx.main_only(lambda: _prepare_and_check(run_dir, config), "preparing the run directory")
        if complete:
            return load_run(run_dir)
    device = resolve_device(config.train.device) if ctx is None else ctx.device
    tc = config.train
    if data is None:
        if ctx is None:
            data = prepare_data(config, data_dir=data_dir, cache_dir=cache_dir, progress=progress)
        else:  # rank 0 generates the dataset and builds the feature cache; the others then read them
            data = ctx.main_first(lambda: prepare_data(config, data_dir=data_dir, cache_dir=cache_dir,
                                                       progress=progress and main), "preparing the data")
    n_classes = data.manifest.n_classes
    if main:
        start_run_files(run_dir, data, device, None if ctx is None else {"distributed": ctx.describe()})

    torch.manual_seed(tc.seed)
    model = build_model(config.model, n_classes, config.frontend.n_mels).to(device)
    if ctx is not None:
        model = distributed.maybe_sync_batchnorm(model, ctx)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(config.loss, n_classes).to(device)
    optimizer = _make_optimizer(config, model, loss_fn)
    feats = FeatureLoader(data.store, device, tc.features_in_memory)
    method = build_method(config, data, run_dir=run_dir, cache_dir=cache_dir, progress=progress and main)
    target_np, mask_np = method.train_targets(data.train_labels)
    targets = torch.as_tensor(target_np, dtype=torch.float32, device=device)
    mask = None if mask_np is None else torch.as_tensor(mask_np, dtype=torch.float32, device=device)
    n_train = len(data.train_idx)
    steps_per_epoch = (n_train + tc.batch_size - 1) // tc.batch_size
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    history: list[dict] = []
    sigma_log: list[np.ndarray] = []
    best = {"score": -np.inf, "epoch": -1, "state": None}
    start_epoch, bad_epochs = 0, 0
    vectorised: Optional[dict] = None
    if ctx is not None and not ctx.is_main:
        _seed_rank(tc.seed, ctx.rank, 0)  # rank 0 keeps the one-process RNG stream (dropout)
    ckpt = load_checkpoint(run_dir)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        loss_fn.load_state_dict(ckpt["loss"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
        history, sigma_log, best = ckpt["history"], ckpt["sigma_log"], ckpt["best"]
        start_epoch, bad_epochs = ckpt["epoch"] + 1, ckpt["bad_epochs"]
        if ckpt.get("vectorised"):  # begun in a vectorised group (csu_lib.vectorised), finished alone
            vectorised = {**ckpt["vectorised"], "alone_from_epoch": ckpt["vectorised"].get("alone_from_epoch",
                                                                                           start_epoch)}
        if ctx is not None:
            _restore_rank_rng(ckpt, ctx, tc.seed, start_epoch, device)
            if not ctx.is_main:
                best = {**best, "state": None}  # rank 0 alone keeps the best weights
    ddp = None
    if ctx is not None:
        ctx.barrier()  # every rank has read the checkpoint before rank 0 may replace it
        ddp = distributed.wrap_ddp(model, loss_fn, ctx, amp=tc.amp and device.type == "cuda")
    rank_checks = 0

    has_sigma = hasattr(loss_fn, "s")
    stopped_early = ckpt is not None and ckpt.get("stopped", False)
    bar = tqdm(total=tc.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
               disable=not (progress and main),
               desc=f"{config.loss.name}/{config.model.name} seed {tc.seed}", unit="step", leave=False)
    try:
        for epoch in range(start_epoch, tc.epochs):
            if stopped_early:
                break
            t0 = time.perf_counter()
            model.train()
            gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + epoch)
            order = torch.randperm(n_train, generator=gen).numpy()
            batch_gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + epoch + 500_000)
            if ctx is None:  # streamed stores on CUDA: read the epoch's batches ahead into pinned memory
                feats.prefetch(data.train_idx[order[s * tc.batch_size:(s + 1) * tc.batch_size]]
                               for s in range(steps_per_epoch))
            s_buf = torch.zeros(steps_per_epoch, n_classes, device=device) if has_sigma else None
            loss_sum = torch.zeros((), device=device)
            for step in range(steps_per_epoch):
                local = order[step * tc.batch_size:(step + 1) * tc.batch_size]
                weight = 1.0
                if ctx is None:
                    local_t = torch.as_tensor(local, device=device)
                    x = feats(data.train_idx[local])
                    y = targets[local_t]
                    m = None if mask is None else mask[local_t]
                    x, y, m = method.transform_batch(x, y, m, local, batch_gen)
                else:
                    x, y, m, weight = _rank_batch(local, ctx, feats, data.train_idx, targets, mask, method,
                                                  batch_gen)
                if on_step is not None:
                    on_step(epoch, step)
                factor = lr_factor(tc.lr_schedule, epoch * steps_per_epoch + step, tc.epochs * steps_per_epoch)
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * factor
                if ddp is None:
                    with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                                        enabled=tc.amp and device.type == "cuda"):
                        logits = model(x)
                    loss = loss_fn(logits, y, m)
                else:  # gradients (the model's and s's) are averaged over ranks in backward()
                    loss = ddp(x, y, m) * weight
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if has_sigma:
                    loss_fn.project_()
                    s_buf[step] = loss_fn.s.detach()
                loss_sum += loss.detach()
                bar.update(1)
            if ctx is not None:  # the mean loss of the global batches; the ranks must agree on s and weights
                loss_sum = ctx.all_reduce_sum(loss_sum) / ctx.world_size
                if has_sigma:
                    ctx.check_identical(f"the sigma trajectory (loss.s) of epoch {epoch}", s_buf)
                ctx.check_identical(f"the parameters after epoch {epoch}", _param_checksums(model, loss_fn))
                rank_checks += 1
            train_loss = float(loss_sum) / steps_per_epoch
            if has_sigma:
                sigma_log.append(s_buf.cpu().numpy())
            if ctx is None:
                val = _evaluate(model, feats, data, "val", config, device)
            else:  # rank 0 evaluates; every rank takes the same early-stopping decision from its numbers
                val = ctx.broadcast_object(_evaluate(model, feats, data, "val", config, device) if main else None)
            row = {"epoch": epoch, "train_loss": train_loss, "seconds": time.perf_counter() - t0,
                   **{f"val.{k}": v for k, v in val.items()}}
            history.append(row)
            bar.set_postfix(loss=f"{train_loss:.3f}", val_mAP=f"{val['mAP']:.3f}")
            if val["mAP"] > best["score"]:
                best = {"score": val["mAP"], "epoch": epoch,
                        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                        if main else None}
                bad_epochs = 0
            else:
                bad_epochs += 1
            stopped_early = tc.early_stopping_patience is not None and bad_epochs >= tc.early_stopping_patience
            extra = {} if ctx is None else _gather_rank_rng(ctx, device)
            if main:
                _write_progress(run_dir, history, sigma_log, steps_per_epoch)
                save_checkpoint(run_dir, config, device, epoch=epoch, model=model.state_dict(),
                                loss=loss_fn.state_dict(), optimizer=optimizer.state_dict(), history=history,
                                sigma_log=sigma_log, best=best, bad_epochs=bad_epochs, stopped=stopped_early,
                                **extra, **({"vectorised": vectorised} if vectorised else {}))
    finally:
        bar.close()

    if main:
        extra_summary: dict = {"vectorised": vectorised} if vectorised else {}
        if ctx is not None:
            extra_summary["distributed"] = {**ctx.describe(), "rank_checks": rank_checks}
        finish_run(run_dir, config, data, model, loss_fn, method, feats, device, best=best, history=history,
                   steps_per_epoch=steps_per_epoch, extra_versions=None if ctx is None else
                   {"distributed": ctx.describe()}, extra_summary=extra_summary)
    if ctx is not None:
        ctx.barrier()  # the record is complete before any rank reads it
    return load_run(run_dir)


def start_run_files(run_dir: Path, data: PreparedData, device: torch.device,
                    extra_versions: Optional[dict] = None) -> None:
    """The files a run writes before its first step: ``versions.json``, the corruption it trains
    under (``corruption.json``, kept from an earlier start) and the clips it skipped."""
    atomic_write_json(run_dir / "versions.json", {**versions(device), **(extra_versions or {})})
    if data.corruption is not None and not (run_dir / "corruption.json").is_file():
        data.corruption.save(run_dir)
    if data.skipped:
        atomic_write_json(run_dir / "skipped_clips.json", data.skipped)


def save_checkpoint(run_dir: Path, config: RunConfig, device: torch.device, *, epoch: int, model: dict,
                    loss: dict, optimizer: dict, history: list[dict], sigma_log: list[np.ndarray], best: dict,
                    bad_epochs: int, stopped: bool, **extra) -> None:
    """The epoch checkpoint a run resumes from (model, loss and optimiser states, the global RNG
    state, the history so far and the best weights), written atomically."""
    save_torch(run_dir / "checkpoint.pt", {
        "epoch": epoch, "model": model, "loss": loss, "optimizer": optimizer, "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "history": history, "sigma_log": sigma_log, "best": best, "bad_epochs": bad_epochs,
        "stopped": stopped, "config": config.to_dict(), **extra})


def finish_run(run_dir: Path, config: RunConfig, data: PreparedData, model: torch.nn.Module,
               loss_fn: torch.nn.Module, method: Method, feats: FeatureLoader, device: torch.device, *,
               best: dict, history: list[dict], steps_per_epoch: int, extra_versions: Optional[dict] = None,
               extra_summary: Optional[dict] = None) -> None:
    """The end of a run: the best weights scored on every split (``scores_<split>.npy``), the
    final metrics, ``model.pt`` and the record (written last, the completeness marker)."""
    tc = config.train
    model.load_state_dict(best["state"])
    rows = {"train": data.train_idx, "val": data.val_idx, "test": data.test_idx}
    scores = {}
    for split, split_rows in rows.items():
        scores[split] = predict(model, feats, split_rows, tc.eval_batch_size, device)
        atomic_save_npy(run_dir / f"scores_{split}.npy", scores[split].astype(np.float32))
    final = {**final_metrics(data.manifest, scores, rows, data.corruption),
             "best_epoch": best["epoch"], "epochs_run": len(history)}
    save_torch(run_dir / "model.pt", {"model": best["state"], "config": config.to_dict(),
                                      "loss": loss_fn.state_dict(), "class_names": data.manifest.class_names})
    summary = {
        "versions": {**versions(device), **(extra_versions or {})}, "n_parameters": count_parameters(model),
        "steps_per_epoch": steps_per_epoch, "n_train": len(data.train_idx),
        "n_corrupted": 0 if data.corruption is None else data.corruption.n_corrupted,
        "method": method.summary(),
        "train_seconds": float(sum(h["seconds"] for h in history)), **(extra_summary or {})}
    finalize(run_dir, config, final_metrics=final, summary=summary)


def _prepare_and_check(run_dir: str | os.PathLike, config: RunConfig) -> tuple[Path, bool]:
    path = prepare_run_dir(run_dir, config)  # refuses a directory of another configuration
    return path, is_complete(path)


def _seed_rank(seed: int, rank: int, epoch: int) -> None:
    """The global RNG (dropout) of rank > 0: its own stream, a function of (seed, rank, epoch)."""
    torch.manual_seed((seed * 1_000_003 + 7_919 * rank + 104_729 * epoch) % (2**63))


def _restore_rank_rng(ckpt: dict, ctx: "distributed.DistContext", seed: int, start_epoch: int,
                      device: torch.device) -> None:
    """Every rank's RNG from a checkpoint written with the same world size; otherwise rank 0 has
    the saved stream and the other ranks a fresh one (a function of seed, rank and epoch)."""
    states = ckpt.get("torch_rng_ranks")
    if states is not None and len(states) == ctx.world_size:
        torch.set_rng_state(states[ctx.rank])
        cuda_states = ckpt.get("cuda_rng_ranks")
        if device.type == "cuda" and cuda_states is not None and cuda_states[ctx.rank] is not None:
            torch.cuda.set_rng_state(cuda_states[ctx.rank], device)
    elif not ctx.is_main:
        _seed_rank(seed, ctx.rank, start_epoch)


def _gather_rank_rng(ctx: "distributed.DistContext", device: torch.device) -> dict:
    """Checkpoint entries with every rank's RNG state (collective: all ranks call it)."""
    cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    gathered = ctx.all_gather_object((torch.get_rng_state(), cuda_state))
    return {"world_size": ctx.world_size, "torch_rng_ranks": [g[0] for g in gathered],
            "cuda_rng_ranks": [g[1] for g in gathered]}


def _rank_batch(batch: np.ndarray, ctx: "distributed.DistContext", feats, train_idx: np.ndarray,
                targets: torch.Tensor, mask: Optional[torch.Tensor], method, generator: torch.Generator):
    """This rank's share of one global batch: ``(x, y, mask, loss weight)``.

    A method that transforms batches (mixup, PSL chunks) sees the whole global batch, exactly as
    in a one-process run (same generator draws, partners from the whole batch); the share is cut
    afterwards. Plain training loads the share only. An empty share (a last batch smaller than
    the world size) trains on one clip with loss weight 0, so that every rank joins the
    all-reduce.
    """
    n = len(batch)
    share = distributed.shard(np.arange(n), ctx.rank, ctx.world_size)
    weight = distributed.share_weight(len(share), n, ctx.world_size)
    lo, hi = (int(share[0]), int(share[-1]) + 1) if len(share) else (0, 1)
    device = targets.device
    if type(method).transform_batch is Method.transform_batch:  # identity: no need for the whole batch
        rows = batch[lo:hi]
        rows_t = torch.as_tensor(rows, device=device)
        return feats(train_idx[rows]), targets[rows_t], None if mask is None else mask[rows_t], weight
    batch_t = torch.as_tensor(batch, device=device)
    x, y, m = method.transform_batch(feats(train_idx[batch]), targets[batch_t],
                                     None if mask is None else mask[batch_t], batch, generator)
    return x[lo:hi], y[lo:hi], None if m is None else m[lo:hi], weight


def _param_checksums(model: torch.nn.Module, loss: torch.nn.Module) -> torch.Tensor:
    """(n_parameters, 2) float64 sums and sums of squares of every parameter (a cheap fingerprint
    for the cross-rank consistency check; BatchNorm running statistics are left out: without
    SyncBatchNorm each rank updates its own until DDP broadcasts rank 0's at the next forward)."""
    tensors = [p.detach() for p in model.parameters()] + [p.detach() for p in loss.parameters()]
    return torch.stack([torch.stack([t.double().sum(), t.double().square().sum()]) for t in tensors])


def lr_factor(schedule: str, step: int, total_steps: int) -> float:
    """The learning-rate multiplier of a global step (see ``TrainConfig.lr_schedule``)."""
    if schedule == "constant":
        return 1.0
    warmup = max(1, int(0.05 * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _write_progress(run_dir: Path, history: list[dict], sigma_log: list[np.ndarray], steps_per_epoch: int) -> None:
    atomic_write_json(run_dir / "history.json", {"epochs": history, "steps_per_epoch": steps_per_epoch})
    if sigma_log:
        atomic_save_npy(run_dir / "sigma.npy", np.concatenate(sigma_log).astype(np.float32))
