"""Many small runs trained at once: the seeds (and corruption settings that share the same
audio) of one backbone stacked into one vectorised model, so that one forward and backward
serve them all.

Why: a small backbone leaves a GPU mostly idle (its step time is kernel launches and Python, not
arithmetic), so N stacked runs should cost little more than one there; that speed-up has not
been measured yet (no GPU was available). On a CPU the arithmetic is already the limit and
stacking is *slower* than one run after another (about 2x on a 2-core CPU);
``bench/vectorised_runs.py`` measures both side by side on either device.

How (:func:`train_group`):

- Run i's model is built exactly as :func:`csu_lib.train.train_run` builds it
  (``torch.manual_seed(seed_i)``, then ``build_model``), so it starts from the weights its
  sequential run starts from. Parameters and buffers are stacked
  (``torch.func.stack_module_state``) and one skeleton module is called under ``torch.func.vmap``
  with ``functional_call``; BatchNorm running statistics are updated per run.
- Every run keeps its own batch order (train_run's generator for (seed, epoch)), its own training
  labels (its corruption), its method's targets and loss mask, and its own CSU ``s``. The per-run
  losses are summed before ``backward``, so each model receives the gradient of its own loss.
- One Adam/AdamW over the stacked tensors is N independent optimisers (the update is
  element-wise and the step count is shared). The CSU ``s`` is projected per run as in train_run.
- Dropout masks are drawn independently per run (``randomness="different"``) from one global RNG
  seeded from the group's run ids. The runs are therefore the same *in distribution* as
  sequential runs, not bit-identical to them; with dropout 0 they follow the sequential runs to
  float round-off (tested). A group resumed after an interruption is bit-identical on the CPU to
  the same group uninterrupted.
- Each run writes its own run folder in train_run's layout (progress, sigma, an epoch
  checkpoint in train_run's format, scores, model, record). The record's summary says
  ``"vectorised": {"size": N, "group": [run ids]}``. The configuration, and so the run id, is the
  sequential run's: a sweep treats both as the same run.
- Early stopping is per run: a stopped run's history and best weights freeze (its stacked copy is
  still computed, to no effect) and the group ends when every run has stopped.
- Resume: run the same group again. When the incomplete runs' checkpoints are at different
  epochs (a crash between two runs' checkpoint writes), each is resumed alone by train_run,
  which reads the same checkpoint format.

Limits: one process (not under torchrun); methods that transform batches
(:data:`csu_lib.methods.BATCH_METHODS`: mixup, PSL) are trained one run at a time; the stacked
convolutions do not use channels_last.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from . import metrics as M
from .config import RunConfig, TrainConfig
from .errors import ConfigError
from .features import FeatureLoader
from .losses import build_loss
from .methods import BATCH_METHODS, build_method
from .models import build_model
from .records import RunRecord, flatten_into, is_complete, load_checkpoint, load_run, prepare_run_dir
from .train import (PreparedData, StepHook, _write_progress, finish_run, lr_factor, prepare_data, resolve_device,
                    save_checkpoint, start_run_files, train_run)

#: The configuration fields that may differ inside a group (everything else must be equal).
VARYING = ("train.seed", "corruption")


def _shared_settings(config: RunConfig) -> dict:
    """The configuration without the fields a group may vary (:data:`VARYING`)."""
    d = config.to_dict()
    d.pop("corruption")
    d["train"].pop("seed")
    return d


def group_key(config: RunConfig) -> str:
    """Runs with the same key can be trained as one group: their configurations are equal except
    for the seed and the corruption settings (so they share the audio, the features, the model
    and every training setting)."""
    return json.dumps(_shared_settings(config), sort_keys=True)


def groupable(config: RunConfig) -> bool:
    """Whether a run can be trained in a group at all (its method does not transform batches)."""
    return config.method.name not in BATCH_METHODS


def check_group(configs: Sequence[RunConfig]) -> None:
    """A :class:`ConfigError` naming what makes ``configs`` unfit to be one group."""
    if not configs:
        raise ConfigError("a vectorised group needs at least one run")
    ids = [c.run_id for c in configs]
    if len(set(ids)) < len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"a vectorised group lists the same run twice: {', '.join(dup)}")
    for c in configs:
        if not groupable(c):
            raise ConfigError(f"run {c.run_id}: method {c.method.name!r} transforms batches "
                              f"({', '.join(sorted(BATCH_METHODS))} do); train it on its own (train_run), "
                              "not in a vectorised group")
    ref: dict[str, Any] = {}
    flatten_into("", _shared_settings(configs[0]), ref)
    for c in configs[1:]:
        other: dict[str, Any] = {}
        flatten_into("", _shared_settings(c), other)
        diff = sorted(k for k in ref.keys() | other.keys() if ref.get(k) != other.get(k))
        if diff:
            shown = ", ".join(f"{k} ({ref.get(k)!r} vs {other.get(k)!r})" for k in diff[:3])
            raise ConfigError(f"runs {configs[0].run_id} and {c.run_id} cannot share a vectorised group: they "
                              f"differ in {shown}{' ...' if len(diff) > 3 else ''}; only {' and '.join(VARYING)} may differ")


def plan_groups(configs: Sequence[RunConfig], max_size: int) -> list[list[RunConfig]]:
    """``configs`` cut into groups of at most ``max_size`` compatible runs, in order of first
    appearance; runs that cannot be grouped come as groups of one."""
    if not isinstance(max_size, int) or max_size < 1:
        raise ConfigError(f"the vectorised group size must be a positive integer, got {max_size!r}")
    groups: dict[str, list[list[RunConfig]]] = {}
    order: list[list[RunConfig]] = []
    for c in configs:
        if not groupable(c) or max_size == 1:
            order.append([c])
            continue
        chunks = groups.setdefault(group_key(c), [])
        if not chunks or len(chunks[-1]) >= max_size:
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(c)
    return order


class StackedRuns:
    """N models (and their losses) of one architecture as stacked tensors, with one optimiser.

    ``models`` and ``losses`` are built as train_run builds them; they are copied, not kept.
    :meth:`step` trains all N on their own batches; :meth:`scores` evaluates all N on one batch.
    """

    def __init__(self, models: Sequence[torch.nn.Module], losses: Sequence[torch.nn.Module], train: TrainConfig,
                 loss_lr: Optional[float] = None):
        self.n = len(models)
        self.state_names = list(models[0].state_dict().keys())
        self.params, self.buffers = stack_module_state(list(models))
        self.skeleton = copy.deepcopy(models[0]).to("meta")
        self.loss_skeleton = copy.deepcopy(losses[0]).to("meta")
        self.loss_params, _ = stack_module_state(list(losses)) if list(losses[0].parameters()) else ({}, {})
        self.clamp = getattr(losses[0], "clamp", None)
        groups = [{"params": list(self.params.values()), "weight_decay": train.weight_decay}]
        if self.loss_params:
            groups.append({"params": list(self.loss_params.values()), "weight_decay": 0.0, "lr": loss_lr or train.lr})
        cls = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = cls(groups, lr=train.lr)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]

        def one(params, buffers, loss_params, x, y, m):
            logits = functional_call(self.skeleton, (params, buffers), (x,))
            return functional_call(self.loss_skeleton, loss_params, (logits.float(), y, m))

        def forward(params, buffers, x):
            return functional_call(self.skeleton, (params, buffers), (x,))

        self._one, self._forward = one, forward

    # -- training ---------------------------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor], *, lr_scale: float = 1.0,
             amp: bool = False) -> torch.Tensor:
        """One optimiser step of every run on its own batch: ``x`` (N, B, ...), ``y`` and ``mask``
        (N, B, C). Returns the N losses (detached, on the device)."""
        self.skeleton.train()
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * lr_scale
        dims = (0, 0, 0 if self.loss_params else None, 0, 0, None if mask is None else 0)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp and x.device.type == "cuda"):
            losses = vmap(self._one, in_dims=dims, randomness="different")(
                self.params, self.buffers, self.loss_params, x, y, mask)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # each model's gradient is that of its own loss
        self.optimizer.step()
        if self.clamp is not None:
            with torch.no_grad():
                for s in self.loss_params.values():
                    s.clamp_(*self.clamp)
        return losses.detach()

    @property
    def sigma(self) -> Optional[torch.Tensor]:
        """The stacked CSU ``s`` (N, C), or None for a loss without parameters."""
        return self.loss_params["s"].detach() if "s" in self.loss_params else None

    @torch.no_grad()
    def scores(self, x: torch.Tensor, *, amp: bool = False) -> torch.Tensor:
        """Sigmoid scores (N, B, C) of every run on the same batch ``x`` (B, ...), eval mode."""
        self.skeleton.eval()
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp and x.device.type == "cuda"):
            logits = vmap(self._forward, in_dims=(0, 0, None))(self.params, self.buffers, x)
        return torch.sigmoid(logits.float())

    # -- per-run states (train_run's checkpoint format) ---------------------------------------
    def model_state(self, i: int) -> dict[str, torch.Tensor]:
        """Run i's ``model.state_dict()`` (CPU copies)."""
        src = {**self.params, **self.buffers}
        return {k: src[k][i].detach().cpu().clone() for k in self.state_names}

    def loss_state(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i].detach().cpu().clone() for k, v in self.loss_params.items()}

    def optimizer_state(self, i: int) -> dict:
        """Run i's optimiser ``state_dict()`` as train_run's optimiser of one run would have it."""
        sd = self.optimizer.state_dict()
        state = {idx: {k: (v[i].detach().cpu().clone() if torch.is_tensor(v) and v.dim() > 0 else
                           (v.clone() if torch.is_tensor(v) else v)) for k, v in entry.items()}
                 for idx, entry in sd["state"].items()}
        return {"state": state, "param_groups": copy.deepcopy(sd["param_groups"])}

    def load_optimizer_states(self, states: Sequence[dict]) -> None:
        """Stack per-run optimiser states (train_run checkpoints) into the group's optimiser."""
        first = states[0]
        stacked = {}
        for idx, entry in first["state"].items():
            stacked[idx] = {k: (torch.stack([s["state"][idx][k] for s in states]) if torch.is_tensor(v) and v.dim() > 0
                                else v) for k, v in entry.items()}
        self.optimizer.load_state_dict({"state": stacked, "param_groups": first["param_groups"]})


def group_seed(run_ids: Sequence[str]) -> int:
    """The seed of a group's global RNG (its dropout draws): a function of its run ids."""
    return int(hashlib.sha256(",".join(run_ids).encode()).hexdigest()[:15], 16)


def train_group(configs: Sequence[RunConfig], run_dirs: Sequence[str | os.PathLike], *,
                data: Optional[Sequence[Optional[PreparedData]]] = None,
                data_dir: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
                progress: bool = True, on_step: Optional[StepHook] = None) -> list[RunRecord]:
    """Train the runs ``configs`` (one group, see :func:`check_group`) into ``run_dirs`` at once
    and return their records in order. Complete runs are skipped; interrupted ones resume.

    ``data`` optionally gives each run's :class:`PreparedData` (same order; None entries are
    prepared here). ``on_step(epoch, step)`` is called before every optimiser step.
    """
    configs = list(configs)
    if len(run_dirs) != len(configs):
        raise ConfigError(f"train_group: {len(configs)} configs but {len(run_dirs)} run folders")
    check_group(configs)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("vectorised groups run in one process; under torchrun train the runs with train_run")
    dirs = [prepare_run_dir(d, c) for d, c in zip(run_dirs, configs)]
    given = list(data) if data is not None else [None] * len(configs)
    pending = [i for i in range(len(configs)) if not is_complete(dirs[i])]
    ckpts = {i: load_checkpoint(dirs[i]) for i in pending}
    epochs = {-1 if ck is None else ck["epoch"] for ck in ckpts.values()}
    if len(pending) == 1 or len(epochs) > 1:  # nothing to stack, or checkpoints out of step: one by one
        for i in pending:
            train_run(configs[i], dirs[i], data=given[i], data_dir=data_dir, cache_dir=cache_dir, progress=progress,
                      on_step=on_step)
    elif pending:
        _train_stacked([configs[i] for i in pending], [dirs[i] for i in pending], [given[i] for i in pending],
                       [ckpts[i] for i in pending], data_dir=data_dir, cache_dir=cache_dir, progress=progress,
                       on_step=on_step)
    return [load_run(d) for d in dirs]


def _train_stacked(configs: list[RunConfig], dirs: list[Path], given: list[Optional[PreparedData]],
                   ckpts: list[Optional[dict]], *, data_dir, cache_dir, progress: bool,
                   on_step: Optional[StepHook]) -> None:
    n = len(configs)
    tc = configs[0].train
    device = resolve_device(tc.device)
    datas: list[PreparedData] = []
    by_corruption: dict[str, PreparedData] = {}
    for c, d in zip(configs, given):
        if d is None:
            key = c.corruption.hash()
            if key not in by_corruption:
                by_corruption[key] = prepare_data(c, data_dir=data_dir, cache_dir=cache_dir, progress=progress)
            d = by_corruption[key]
        datas.append(d)
    if any(d.store.path != datas[0].store.path or not np.array_equal(d.train_idx, datas[0].train_idx)
           for d in datas[1:]):
        raise ConfigError("the runs of a vectorised group must share one feature store and training split")
    data0 = datas[0]
    n_classes, n_train = data0.manifest.n_classes, len(data0.train_idx)
    ids = [c.run_id for c in configs]
    info = {"size": n, "group": ids}
    for d, data in zip(dirs, datas):
        start_run_files(d, data, device, {"vectorised": info})

    models, losses = [], []
    for c in configs:
        torch.manual_seed(c.train.seed)
        models.append(build_model(c.model, n_classes, c.frontend.n_mels).to(device))
        losses.append(build_loss(c.loss, n_classes).to(device))
    methods = [build_method(c, d, run_dir=rd, cache_dir=cache_dir, progress=progress)
               for c, d, rd in zip(configs, datas, dirs)]
    tm = [m.train_targets(d.train_labels) for m, d in zip(methods, datas)]
    targets = torch.stack([torch.as_tensor(t, dtype=torch.float32) for t, _ in tm]).to(device)
    mask = None if tm[0][1] is None else \
        torch.stack([torch.as_tensor(m, dtype=torch.float32) for _, m in tm]).to(device)
    feats = FeatureLoader(data0.store, device, tc.features_in_memory)
    steps_per_epoch = (n_train + tc.batch_size - 1) // tc.batch_size

    histories: list[list[dict]] = [[] for _ in range(n)]
    sigma_logs: list[list[np.ndarray]] = [[] for _ in range(n)]
    bests = [{"score": -np.inf, "epoch": -1, "state": None} for _ in range(n)]
    bad = [0] * n
    stopped = [False] * n
    start_epoch = 0
    if ckpts[0] is not None:  # resume: every run's checkpoint is at the same epoch (train_group checked)
        for k, ck in enumerate(ckpts):
            models[k].load_state_dict(ck["model"])
            losses[k].load_state_dict(ck["loss"])
    stack = StackedRuns(models, losses, tc, configs[0].loss.csu_lr)
    del models
    if ckpts[0] is not None:
        stack.load_optimizer_states([ck["optimizer"] for ck in ckpts])
        torch.set_rng_state(ckpts[0]["torch_rng"])
        if device.type == "cuda" and ckpts[0].get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpts[0]["cuda_rng"], device)
        for k, ck in enumerate(ckpts):
            histories[k], sigma_logs[k], bests[k] = ck["history"], ck["sigma_log"], ck["best"]
            bad[k], stopped[k] = ck["bad_epochs"], ck.get("stopped", False)
        start_epoch = ckpts[0]["epoch"] + 1
    else:
        torch.manual_seed(group_seed(ids))
        if device.type == "cuda":
            torch.cuda.manual_seed(group_seed(ids))
    final_loss = [stack.loss_state(k) for k in range(n)]
    has_sigma = stack.sigma is not None
    amp = tc.amp and device.type == "cuda"
    val_rows = data0.val_idx
    bar = tqdm(total=tc.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, disable=not progress,
               desc=f"{n} runs vectorised: {configs[0].loss.name}/{configs[0].model.name}", unit="step", leave=False)
    try:
        for epoch in range(start_epoch, tc.epochs):
            if all(stopped):
                break
            t0 = time.perf_counter()
            orders = [torch.randperm(n_train, generator=torch.Generator().manual_seed(c.train.seed * 1_000_003 + epoch))
                      .numpy() for c in configs]
            s_buf = torch.zeros(steps_per_epoch, n, n_classes, device=device) if has_sigma else None
            loss_sum = torch.zeros(n, device=device)
            for step in range(steps_per_epoch):
                local = [o[step * tc.batch_size:(step + 1) * tc.batch_size] for o in orders]
                local_t = torch.as_tensor(np.stack(local), device=device)  # (N, B)
                x = torch.stack([feats(data0.train_idx[rows]) for rows in local])
                y = torch.gather(targets, 1, local_t[..., None].expand(-1, -1, n_classes))
                m = None if mask is None else torch.gather(mask, 1, local_t[..., None].expand(-1, -1, n_classes))
                if on_step is not None:
                    on_step(epoch, step)
                factor = lr_factor(tc.lr_schedule, epoch * steps_per_epoch + step, tc.epochs * steps_per_epoch)
                loss_sum += stack.step(x, y, m, lr_scale=factor, amp=amp)
                if has_sigma:
                    s_buf[step] = stack.sigma
                bar.update(1)
            seconds = time.perf_counter() - t0
            train_loss = (loss_sum / steps_per_epoch).cpu().numpy()
            sigma_np = s_buf.cpu().numpy() if has_sigma else None
            val_scores = np.concatenate([stack.scores(feats(val_rows[s:s + tc.eval_batch_size]), amp=amp).cpu().numpy()
                                         for s in range(0, len(val_rows), tc.eval_batch_size)], axis=1)
            val_labels = data0.manifest.labels[val_rows]
            for k, c in enumerate(configs):
                state = stack.model_state(k)
                if not stopped[k]:
                    val = M.evaluate(val_scores[k], val_labels)
                    if has_sigma:
                        sigma_logs[k].append(sigma_np[:, k])
                    histories[k].append({"epoch": epoch, "train_loss": float(train_loss[k]), "seconds": seconds,
                                         **{f"val.{key}": v for key, v in val.items()}})
                    if val["mAP"] > bests[k]["score"]:
                        bests[k] = {"score": val["mAP"], "epoch": epoch, "state": state}
                        bad[k] = 0
                    else:
                        bad[k] += 1
                    patience = c.train.early_stopping_patience
                    stopped[k] = patience is not None and bad[k] >= patience
                    final_loss[k] = stack.loss_state(k)
                    _write_progress(dirs[k], histories[k], sigma_logs[k], steps_per_epoch)
                # every run's checkpoint advances every epoch (a stopped one keeps stopped=True), so the
                # group's checkpoints stay in step and an interrupted group resumes as one
                save_checkpoint(dirs[k], c, device, epoch=epoch, model=state, loss=final_loss[k],
                                optimizer=stack.optimizer_state(k), history=histories[k], sigma_log=sigma_logs[k],
                                best=bests[k], bad_epochs=bad[k], stopped=stopped[k], vectorised=info)
            bar.set_postfix(val_mAP=f"{np.mean([h[-1]['val.mAP'] for h in histories]):.3f}")
    finally:
        bar.close()

    for k, c in enumerate(configs):
        model = build_model(c.model, n_classes, c.frontend.n_mels).to(device)
        if tc.channels_last:
            model = model.to(memory_format=torch.channels_last)
        loss_fn = build_loss(c.loss, n_classes).to(device)
        loss_fn.load_state_dict(final_loss[k])
        finish_run(dirs[k], c, datas[k], model, loss_fn, methods[k], feats, device, best=bests[k],
                   history=histories[k], steps_per_epoch=steps_per_epoch, extra_versions={"vectorised": info},
                   extra_summary={"vectorised": info})
