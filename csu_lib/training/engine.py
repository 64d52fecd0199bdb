"""The one epoch engine. Every way of training -- one process (:mod:`.single`), torchrun / DDP
(:mod:`.ddp`) and many runs stacked into one vectorised model (:mod:`.stacked`) -- is a
:class:`Backend` of :func:`train_epochs`; the engine owns what they share:

- the epoch and step loop: each run's batch order and transform generator of epoch e
  (:mod:`.seeding`), the learning-rate schedule, the per-step log of ``log sigma^2``, the s* of
  each epoch's own training steps (:mod:`.epoch_optimum`, recorded, never fed back) and the mean
  training loss;
- per run (:class:`RunState`): validation after every epoch, the history, the best weights
  (by validation mAP) and early stopping (:meth:`RunState.end_epoch`, the one implementation);
- the epoch checkpoint of every run and resuming from it (:func:`restore`): a run killed at any
  moment resumes from its last finished epoch, bit-identically on the CPU;
- the end of a run (:func:`finish_run`): the best weights scored on every split, the final
  metrics, ``model.pt`` and the record, written through :mod:`csu_lib.records`.

A backend trains ``n`` runs at once (1 except for stacked groups): it holds the models, losses
and optimiser, and answers the engine's few questions (one step, the current ``log sigma^2``,
validation metrics, states for the checkpoint). Only the main process (rank 0 under torchrun)
writes files.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import RunConfig
from ..core.errors import RunRecordError
from ..evaluation import final_metrics
from ..features import FeatureLoader
from ..losses import LearnedReliability, reliability
from ..models import count_parameters
from ..records import finalize, save_checkpoint, versions, write_model, write_progress, write_scores, write_start
from .methods import Method, build_method
from .predict import predict
from ..pipeline.data_pipeline import PreparedData
from .optimiser import lr_factor
from .seeding import batch_generator, epoch_order
from .convergence import convergence, fit_losses, wants_fit_loss

#: ``on_step(epoch, step)``: called before every optimiser step (tests use it to simulate a crash).
StepHook = Callable[[int, int], None]


@dataclass
class RunState:
    """One run's bookkeeping in the epoch loop (its files, data, targets and progress)."""

    config: RunConfig
    run_dir: Path
    data: PreparedData
    method: Method
    targets: torch.Tensor  # (n_train, C) on the training device
    mask: Optional[torch.Tensor]  # (n_train, C) loss mask: non-negative weights (0 = left out), or None
    history: list[dict] = field(default_factory=list)
    log_sigma2: list[np.ndarray] = field(default_factory=list)  # one (steps, C) block per epoch
    epoch_optimum: list[np.ndarray] = field(default_factory=list)  # one (C,) s* per epoch (.epoch_optimum)
    best: dict = field(default_factory=lambda: {"score": -np.inf, "epoch": -1, "state": None})
    bad_epochs: int = 0
    stopped: bool = False
    #: the plateau decays so far and the learning-rate multiplier they give (``train.lr_decays``)
    lr_decays: int = 0
    lr_scale: float = 1.0
    #: the loss state saved with the checkpoint and model.pt (frozen once the run stopped)
    loss_state: Optional[dict] = None
    #: what the run record says about how it was trained (e.g. ``{"vectorised": {...}}``)
    extra: dict = field(default_factory=dict)

    def resume(self, ckpt: dict) -> int:
        """Take the progress of an epoch checkpoint; returns the epoch to start from."""
        self.history, self.log_sigma2, self.best = ckpt["history"], ckpt["log_sigma2"], ckpt["best"]
        self.bad_epochs, self.stopped, self.loss_state = ckpt["bad_epochs"], ckpt.get("stopped", False), ckpt["loss"]
        self.lr_decays, self.lr_scale = ckpt.get("lr_decays", 0), ckpt.get("lr_scale", 1.0)
        # a checkpoint written before the epoch's s* was recorded: NaN for the epochs it trained
        self.epoch_optimum = ckpt.get("epoch_optimum") or [np.full(b.shape[1], np.nan) for b in self.log_sigma2]
        return ckpt["epoch"] + 1

    def end_epoch(self, row: dict, model_state: Optional[dict], loss_state: dict) -> None:
        """Record a finished epoch: its history row, the best weights (by validation mAP,
        ``model_state`` a CPU copy) with the loss state of the same moment (the learned s that
        goes with those weights) and the plateau decision: decay the learning rate
        (``train.lr_decays``) or stop."""
        self.history.append(row)
        self.loss_state = loss_state
        if row["val.mAP"] > self.best["score"]:
            self.best = {"score": row["val.mAP"], "epoch": row["epoch"], "state": model_state,
                         "loss_state": loss_state}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        tc = self.config.train
        if tc.early_stopping_patience is None or self.bad_epochs < tc.early_stopping_patience:
            return
        if self.lr_decays < tc.lr_decays:
            self.lr_decays, self.lr_scale, self.bad_epochs = self.lr_decays + 1, self.lr_scale * tc.lr_decay_factor, 0
        else:
            self.stopped = True


def make_state(config: RunConfig, run_dir: Path, data: PreparedData, device: torch.device) -> RunState:
    """A run's :class:`RunState`: its method (with a teacher's scores when it needs them) and the
    targets and loss mask it trains on, on ``device``."""
    method = build_method(config, data, run_dir=run_dir)
    target_np, mask_np = method.train_targets(data.train_labels)
    targets = torch.as_tensor(target_np, dtype=torch.float32, device=device)
    mask = None if mask_np is None else torch.as_tensor(mask_np, dtype=torch.float32, device=device)
    return RunState(config, Path(run_dir), data, method, targets, mask)


class Backend:
    """How ``n`` runs are trained: models, losses and optimiser live here; the engine asks."""

    n: int = 1
    device: torch.device
    feats: FeatureLoader
    #: whether this process writes the run directories (rank 0 under torchrun)
    is_main: bool = True
    #: whether the loss learns a reliability (log sigma^2 is logged every step)
    learns_sigma: bool = False

    def describe(self, states: Sequence[RunState]) -> str:
        """A short label for the progress bar."""
        c = states[0].config
        return f"{c.loss.name}/{c.model.name} seed {c.train.seed}"

    def restore(self, ckpts: Sequence[dict], states: Sequence[RunState]) -> None:
        """Load model, loss, optimiser and RNG states from the runs' checkpoints (same epoch)."""
        raise NotImplementedError

    def begin_epoch(self, states: Sequence[RunState], orders: Sequence[np.ndarray], batch_size: int) -> None:
        """Called before the first step of an epoch (set train mode; announce batches)."""

    def step(self, states: Sequence[RunState], rows: Sequence[np.ndarray], gens: Sequence[torch.Generator],
             lr_scales: Sequence[float]) -> torch.Tensor:
        """One optimiser step of every run on its batch (``rows``: indices into the training
        split); projects the learned reliability; returns the (n,) detached losses."""
        raise NotImplementedError

    def log_sigma2(self) -> torch.Tensor:
        """The current (n, C) log sigma^2 (only called when :attr:`learns_sigma`)."""
        raise NotImplementedError

    def end_epoch(self, epoch: int, loss_sum: torch.Tensor, s_buf: Optional[torch.Tensor]) -> torch.Tensor:
        """After the last step of an epoch: the (n,) loss sums to report (DDP averages them over
        ranks and checks that the ranks agree)."""
        return loss_sum

    def recalibrate_bn(self, states: Sequence[RunState]) -> None:
        """Batch-norm recalibration (``train.bn_recalibration``) of every run's model on its fixed
        subset of training clips, before the evaluations of an epoch."""
        raise NotImplementedError(f"{type(self).__name__} does not recalibrate batch norm (train.bn_recalibration)")

    def epoch_optimum(self) -> Optional[np.ndarray]:
        """After :meth:`end_epoch`: the (n, C) s* of the epoch's own training steps
        (:class:`.epoch_optimum.EpochOptimum`, then reset; a collective call under DDP), or None
        where this backend records none (BCE; a backend without the sums)."""
        return None

    def validate(self, states: Sequence[RunState]) -> list[Optional[dict]]:
        """Validation metrics of every run that has not stopped (None for a stopped one)."""
        raise NotImplementedError

    def model_state(self, k: int) -> Optional[dict]:
        """Run k's model state dict, CPU copies (None where this process keeps no weights)."""
        raise NotImplementedError

    def loss_state(self, k: int) -> dict:
        raise NotImplementedError

    def optimizer_state(self, k: int) -> dict:
        raise NotImplementedError

    def rng_state(self) -> dict:
        """The RNG states a checkpoint keeps (DDP: every rank's; a collective call)."""
        return {"torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}

    def final_model(self, k: int, state: RunState) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(model, loss) of run k to load the best weights into and score with."""
        raise NotImplementedError

    def reliability(self) -> Optional[LearnedReliability]:
        """The learned reliability of the runs' loss (its settings; None for BCE)."""
        return None

    def train_scores(self, states: Sequence[RunState], positions: Optional[np.ndarray] = None
                     ) -> list[Optional[np.ndarray]]:
        """Every run's (n_train, C) scores on its training clips in eval mode, or on the training
        clips at ``positions`` of the training split (None where this process does not compute them)."""
        raise NotImplementedError

    def set_log_sigma2(self, k: int, values: Optional[np.ndarray]) -> None:
        """Set run k's s (DDP: the main process's ``values`` go to every rank)."""
        raise NotImplementedError

    def record_extra(self) -> tuple[dict, dict]:
        """(extra versions, extra record summary) of this way of training."""
        return {}, {}


def fit_reliability(backend: Backend, states: Sequence[RunState]) -> bool:
    """The stationary fit of s (``loss.csu_fit="stationary"``), after every epoch: each active
    run's s becomes the optimum of its loss over the allowed range ``loss.csu_clamp`` for the
    network of that moment (:meth:`LearnedReliability.constrained_optimum`), from the network's
    eval-mode scores on the training clips against the run's targets and loss mask. Returns
    whether it fitted (False for BCE and for s learned by gradient)."""
    rel = backend.reliability()
    if rel is None or rel.fits_by_gradient:
        return False
    scores = backend.train_scores(states)
    current = backend.log_sigma2().cpu().numpy()
    for k, state in enumerate(states):
        if state.stopped:
            continue
        values = None
        if scores[k] is not None:
            mask = None if state.mask is None else state.mask.cpu().numpy()
            values = rel.constrained_optimum(scores[k], state.targets.cpu().numpy(), mask, current=current[k])
        backend.set_log_sigma2(k, values)
    return True


def restore(backend: Backend, states: Sequence[RunState], ckpts: Sequence[Optional[dict]]) -> int:
    """Resume every run from its checkpoint (all at the same epoch, or none); returns the first
    epoch to train."""
    if all(ck is None for ck in ckpts):
        return 0
    epochs = {-1 if ck is None else ck["epoch"] for ck in ckpts}
    if len(epochs) > 1:
        raise RunRecordError(f"the checkpoints of {[str(s.run_dir) for s in states]} are at different epochs "
                             f"{sorted(epochs)}; resume the runs one by one (train_run)")
    backend.restore(ckpts, states)
    return {state.resume(ck) for state, ck in zip(states, ckpts)}.pop()


def train_epochs(backend: Backend, states: Sequence[RunState], start_epoch: int, *, progress: bool = True,
                 on_step: Optional[StepHook] = None) -> None:
    """Train ``states`` (one run per backend slot) from ``start_epoch`` until every run stopped
    or ``train.epochs`` is reached; after every epoch each run's progress and checkpoint are
    written (main process)."""
    tc = states[0].config.train  # the runs of one backend share every training setting
    n_train = len(states[0].data.train_idx)
    steps_per_epoch = (n_train + tc.batch_size - 1) // tc.batch_size
    total_steps = tc.epochs * steps_per_epoch
    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, disable=not (progress and backend.is_main),
               desc=backend.describe(states), unit="step", leave=False)
    try:
        for epoch in range(start_epoch, tc.epochs):
            if all(s.stopped for s in states):
                break
            t0 = time.perf_counter()
            orders = [epoch_order(s.config.train.seed, epoch, n_train) for s in states]
            gens = [batch_generator(s.config.train.seed, epoch) for s in states]
            backend.begin_epoch(states, orders, tc.batch_size)
            # one s per class (2C for two-sided CSU)
            s_buf = torch.zeros(steps_per_epoch, backend.n, backend.log_sigma2().shape[-1], device=backend.device) \
                if backend.learns_sigma else None
            loss_sum = torch.zeros(backend.n, device=backend.device)
            for step in range(steps_per_epoch):
                rows = [o[step * tc.batch_size:(step + 1) * tc.batch_size] for o in orders]
                if on_step is not None:
                    on_step(epoch, step)
                factor = lr_factor(tc.lr_schedule, epoch * steps_per_epoch + step, total_steps)
                loss_sum += backend.step(states, rows, gens, [factor * s.lr_scale for s in states])
                if s_buf is not None:
                    s_buf[step] = backend.log_sigma2()
                bar.update(1)
            loss_sum = backend.end_epoch(epoch, loss_sum, s_buf)
            optima = backend.epoch_optimum()  # before the stationary fit moves s (its fallback)
            if tc.bn_recalibration:
                backend.recalibrate_bn(states)
            if fit_reliability(backend, states) and s_buf is not None:
                s_buf[-1] = backend.log_sigma2()  # the log's last step of an epoch holds the epoch's fit
            s_np = s_buf.cpu().numpy() if s_buf is not None else None
            vals = backend.validate(states)
            may_stop = tc.early_stopping_patience is not None
            fits = fit_losses(backend, states) if wants_fit_loss(tc.epochs, epoch, may_stop) else [None] * backend.n
            seconds = time.perf_counter() - t0
            model_states = [backend.model_state(k) for k in range(backend.n)]
            for k, state in enumerate(states):
                if state.stopped:  # a stopped run of a group: its progress is frozen
                    continue
                if s_np is not None:
                    state.log_sigma2.append(s_np[:, k])
                if optima is not None:
                    state.epoch_optimum.append(optima[k])
                row = {"epoch": epoch, "train_loss": float(loss_sum[k]) / steps_per_epoch, "seconds": seconds,
                       "lr_scale": state.lr_scale, **({} if fits[k] is None else {"train_fit_loss": fits[k]}),
                       **{f"val.{key}": v for key, v in vals[k].items()}}
                state.end_epoch(row, model_states[k], backend.loss_state(k))
                if backend.is_main:
                    write_progress(state.run_dir, state.history, state.log_sigma2, steps_per_epoch,
                                   state.epoch_optimum)
            rng = backend.rng_state()
            if backend.is_main:
                # every run's checkpoint advances every epoch (a stopped one keeps stopped=True), so
                # the checkpoints of a group stay in step and an interrupted group resumes as one
                for k, state in enumerate(states):
                    save_checkpoint(state.run_dir, state.config, epoch=epoch, model=model_states[k],
                                    loss=state.loss_state, optimizer=backend.optimizer_state(k), rng=rng,
                                    history=state.history, log_sigma2=state.log_sigma2,
                                    epoch_optimum=state.epoch_optimum, best=state.best,
                                    bad_epochs=state.bad_epochs, stopped=state.stopped, lr_decays=state.lr_decays,
                                    lr_scale=state.lr_scale, **state.extra)
            active = [s.history[-1] for s in states if s.history and s.history[-1]["epoch"] == epoch]
            if active:
                bar.set_postfix(loss=f"{np.mean([h['train_loss'] for h in active]):.3f}",
                                val_mAP=f"{np.mean([h['val.mAP'] for h in active]):.3f}")
    finally:
        bar.close()


def start_runs(backend: Backend, states: Sequence[RunState]) -> None:
    """The files every run writes before its first step (versions, corruption, skipped clips)."""
    if not backend.is_main:
        return
    extra_versions, _ = backend.record_extra()
    for state in states:
        write_start(state.run_dir, versions_info={**versions(backend.device), **extra_versions},
                    corruption=state.data.corruption, skipped=state.data.skipped, unlabelled=state.data.unlabelled)


def finish_run(backend: Backend, k: int, state: RunState) -> None:
    """The end of run k: its best weights scored on every split (``scores_<split>.npy``), the
    final metrics, ``model.pt`` and the record (written last, the completeness marker)."""
    config, data, tc = state.config, state.data, state.config.train
    model, loss_fn = backend.final_model(k, state)
    model.load_state_dict(state.best["state"])
    # the s of the selected epoch (checkpoints written before it was kept there: the last s)
    loss_fn.load_state_dict(state.best.get("loss_state") or state.loss_state)
    scores = {}
    for split in ("train", "val", "test"):
        scores[split] = predict(model, backend.feats, data.split_rows(split), tc.eval_batch_size, backend.device)
        write_scores(state.run_dir, split, scores[split])
    rows = {split: data.split_rows(split) for split in scores}
    final = {**final_metrics(data.manifest, scores, rows, data.corruption),
             **convergence(state.history, state.best["epoch"], state.stopped, tc.epochs),
             "lr_decays": state.lr_decays}
    rel = reliability(loss_fn)
    if rel is not None:  # s of the selected model against its stationary point for those weights
        mask = None if state.mask is None else state.mask.cpu().numpy()
        final["reliability"] = rel.stationarity(scores["train"], state.targets.cpu().numpy(), mask)
    write_model(state.run_dir, config, model_state=state.best["state"], loss=loss_fn,
                class_names=data.manifest.class_names)
    extra_versions, extra_summary = backend.record_extra()
    summary = {
        "versions": {**versions(backend.device), **extra_versions}, "n_parameters": count_parameters(model),
        "steps_per_epoch": (len(data.train_idx) + tc.batch_size - 1) // tc.batch_size,
        "n_train": len(data.train_idx), "n_corrupted": 0 if data.corruption is None else data.corruption.n_corrupted,
        "method": state.method.summary(), "train_seconds": float(sum(h["seconds"] for h in state.history)),
        **extra_summary, **state.extra}
    finalize(state.run_dir, config, final_metrics=final, summary=summary)
