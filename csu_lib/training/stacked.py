"""The vectorised backend: many small runs of one backbone trained at once as one stacked model,
so that one forward and backward serve them all (:func:`csu_lib.training.groups.train_group`).

Why: a small backbone leaves a GPU mostly idle (its step time is kernel launches and Python, not
arithmetic), so N stacked runs should cost little more than one there. On a CPU the arithmetic
is already the limit and stacking is *slower* than one run after another (about 2x on a 2-core
CPU); ``bench/vectorised_runs.py`` measures both side by side on either device.

How (:class:`StackedRuns`, driven by the epoch engine through :class:`Stacked`):

- Run i's model is built exactly as a one-process run builds it (``torch.manual_seed(seed_i)``,
  then the backbone: :func:`csu_lib.training.seeding.init_model`), so it starts from the weights
  its sequential run starts from. Parameters and buffers are stacked
  (``torch.func.stack_module_state``) and one skeleton module is called under ``torch.func.vmap``
  with ``functional_call``; BatchNorm running statistics are updated per run.
- Every run keeps its own batch order, its own training labels (its corruption), its method's
  targets and loss mask, and its own learned reliability. The per-run losses are summed before
  ``backward``, so each model receives the gradient of its own loss. Each run's s* of the epoch's
  own steps is accumulated from the same forward (:mod:`.epoch_optimum`).
- One Adam/AdamW/SGD over the stacked tensors is N independent optimisers (the update is
  element-wise: Adam's moments and SGD's momentum buffer are kept per element, and Adam's step
  count is shared); the reliability is projected per run.
- Dropout masks are drawn independently per run (``randomness="different"``) from one global RNG
  seeded from the group's run ids (:func:`group_seed`). The runs are therefore the same *in
  distribution* as sequential runs, not bit-identical to them; with dropout 0 they follow the
  sequential runs to float round-off (tested).
- The stacked convolutions do not use channels_last.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from .. import metrics as M
from ..config import TrainConfig
from ..features import FeatureLoader
from ..losses import build_loss, reliability
from ..models import build_model
from .engine import Backend, RunState
from .epoch_optimum import EpochOptimum
from .optimiser import make_optimizer
from .seeding import init_model, seed_group


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
        #: the learned reliability of the losses (its methods act on the stacked copies), or None
        self.reliability = reliability(losses[0])
        self.loss_params, _ = stack_module_state(list(losses)) if list(losses[0].parameters()) else ({}, {})
        self.optimizer = make_optimizer(train, self.params.values(), self.reliability, reliability_lr=loss_lr,
                                        reliability_params=self.loss_params)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        #: each run's sums behind the s* of the epoch's own training steps (None: no reliability)
        rel = self.reliability
        s_now = None if rel is None else rel.log_sigma2(self.loss_params)  # (N, C)
        self.optimum = None if rel is None else EpochOptimum(rel, self.n, s_now.shape[-1], s_now.device)

        def one(params, buffers, loss_params, x, y, m):
            logits = functional_call(self.skeleton, (params, buffers), (x,)).float()
            loss = functional_call(self.loss_skeleton, loss_params, (logits, y, m))
            return (loss,) if rel is None else (loss, *rel.step_sums(logits, y, m))

        def forward(params, buffers, x):
            return functional_call(self.skeleton, (params, buffers), (x,))

        self._one, self._forward = one, forward

    # -- training ---------------------------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor], *,
             lr_scales: Optional[Sequence[float]] = None, amp: bool = False) -> torch.Tensor:
        """One optimiser step of every run on its own batch: ``x`` (N, B, ...), ``y`` and ``mask``
        (N, B, C); ``lr_scales``: each run's learning-rate multiplier (default 1). Returns the N
        losses (detached, on the device)."""
        self.skeleton.train()
        scales = [1.0] * self.n if lr_scales is None else [float(v) for v in lr_scales]
        top = max(scales)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * top
        # runs at a lower rate: the update of Adam, AdamW and SGD is proportional to the learning
        # rate (SGD's momentum buffer sums gradients, not steps), so the step at rate ``top`` is
        # shrunk per run to the step at that run's rate
        ratio = None if min(scales) == top else torch.tensor([v / top for v in scales], device=x.device)
        before = [p.detach().clone() for p in self._stepped()] if ratio is not None else None
        dims = (0, 0, 0 if self.loss_params else None, 0, 0, None if mask is None else 0)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp and x.device.type == "cuda"):
            losses, *sums = vmap(self._one, in_dims=dims, randomness="different")(
                self.params, self.buffers, self.loss_params, x, y, mask)
        if self.optimum is not None:
            self.optimum.add(*sums)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # each model's gradient is that of its own loss
        self.optimizer.step()
        if before is not None:
            with torch.no_grad():
                for p, old in zip(self._stepped(), before):
                    p.copy_(old + (p - old) * ratio.view(-1, *([1] * (p.dim() - 1))))
        if self.reliability is not None:
            self.reliability.project_(self.loss_params)
        return losses.detach()

    def _stepped(self) -> list[torch.Tensor]:
        """Every stacked tensor the optimiser updates (first dimension: the run)."""
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def log_sigma2(self) -> Optional[torch.Tensor]:
        """The stacked learned ``log sigma^2`` (N, C), or None for a loss that learns none."""
        return None if self.reliability is None else self.reliability.log_sigma2(self.loss_params)

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

    @torch.no_grad()
    def load_run_states(self, k: int, model: dict, loss: dict) -> None:
        """Copy run k's model and loss state dicts (a train_run checkpoint) into the stacked tensors."""
        src = {**self.params, **self.buffers}
        for name in self.state_names:
            src[name][k].copy_(model[name])
        for name, value in loss.items():
            self.loss_params[name][k].copy_(value)

    def load_optimizer_states(self, states: Sequence[dict]) -> None:
        """Stack per-run optimiser states (train_run checkpoints) into the group's optimiser."""
        first = states[0]
        stacked = {}
        for idx, entry in first["state"].items():
            stacked[idx] = {k: (torch.stack([s["state"][idx][k] for s in states]) if torch.is_tensor(v) and v.dim() > 0
                                else v) for k, v in entry.items()}
        self.optimizer.load_state_dict({"state": stacked, "param_groups": first["param_groups"]})


class Stacked(Backend):
    """The runs of one vectorised group (:func:`csu_lib.training.groups.check_group`) as one
    :class:`StackedRuns`; every run's record says ``"vectorised": {"size": N, "group": [ids]}``."""

    def __init__(self, states: Sequence[RunState], device: torch.device, feats: FeatureLoader):
        configs = [s.config for s in states]
        tc = configs[0].train
        self.n_classes = states[0].data.manifest.n_classes
        self.device, self.feats, self.n = device, feats, len(states)
        models, losses = [], []
        for c in configs:
            models.append(init_model(c, self.n_classes).to(device))
            losses.append(build_loss(c.loss, self.n_classes).to(device))
        self.stack = StackedRuns(models, losses, tc, configs[0].loss.csu_lr)
        self.learns_sigma = self.stack.reliability is not None
        self.amp = tc.amp and device.type == "cuda"
        self.eval_batch_size = tc.eval_batch_size
        self.targets = torch.stack([s.targets for s in states])  # (N, n_train, C)
        self.mask = None if states[0].mask is None else torch.stack([s.mask for s in states])
        ids = [c.run_id for c in configs]
        self.info = {"size": self.n, "group": ids}
        for s in states:
            s.extra["vectorised"] = self.info
        seed_group(ids, device)  # the group's dropout stream (replaced when resuming)

    def describe(self, states: Sequence[RunState]) -> str:
        c = states[0].config
        return f"{self.n} runs vectorised: {c.loss.name}/{c.model.name}"

    def restore(self, ckpts: Sequence[dict], states: Sequence[RunState]) -> None:
        for k, ck in enumerate(ckpts):
            self.stack.load_run_states(k, ck["model"], ck["loss"])
        self.stack.load_optimizer_states([ck["optimizer"] for ck in ckpts])
        torch.set_rng_state(ckpts[0]["torch_rng"])
        if self.device.type == "cuda" and ckpts[0].get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpts[0]["cuda_rng"], self.device)

    def step(self, states: Sequence[RunState], rows: Sequence[np.ndarray], gens: Sequence[torch.Generator],
             lr_scales: Sequence[float]) -> torch.Tensor:
        train_idx = states[0].data.train_idx
        local = torch.as_tensor(np.stack(rows), device=self.device)[..., None].expand(-1, -1, self.n_classes)
        x = torch.stack([self.feats(train_idx[r]) for r in rows])
        y = torch.gather(self.targets, 1, local)
        m = None if self.mask is None else torch.gather(self.mask, 1, local)
        return self.stack.step(x, y, m, lr_scales=lr_scales, amp=self.amp)

    def log_sigma2(self) -> torch.Tensor:
        return self.stack.log_sigma2()

    def epoch_optimum(self) -> Optional[np.ndarray]:
        optimum = self.stack.optimum
        return None if optimum is None else optimum.take(self.log_sigma2().cpu().numpy())

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        """(N, len(rows), C) eval-mode scores of every run on the feature rows ``rows``."""
        bs = self.eval_batch_size
        return np.concatenate([self.stack.scores(self.feats(rows[s:s + bs]), amp=self.amp).cpu().numpy()
                               for s in range(0, len(rows), bs)], axis=1)

    def validate(self, states: Sequence[RunState]) -> list[Optional[dict]]:
        data = states[0].data
        scores = self._scores(data.val_idx)
        labels = data.manifest.labels[data.val_idx]
        return [None if state.stopped else M.evaluate(scores[k], labels) for k, state in enumerate(states)]

    def reliability(self):
        return self.stack.reliability

    def train_scores(self, states: Sequence[RunState], positions: Optional[np.ndarray] = None
                     ) -> list[Optional[np.ndarray]]:
        rows = states[0].data.train_idx if positions is None else states[0].data.train_idx[positions]
        return list(self._scores(rows))

    def set_log_sigma2(self, k: int, values: Optional[np.ndarray]) -> None:
        self.stack.reliability.load_log_sigma2_(values, self.stack.loss_params, index=k)

    def model_state(self, k: int) -> dict:
        return self.stack.model_state(k)

    def loss_state(self, k: int) -> dict:
        return self.stack.loss_state(k)

    def optimizer_state(self, k: int) -> dict:
        return self.stack.optimizer_state(k)

    def final_model(self, k: int, state: RunState) -> tuple[torch.nn.Module, torch.nn.Module]:
        c = state.config
        model = build_model(c.model, self.n_classes, c.frontend.n_mels).to(self.device)
        if c.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model, build_loss(c.loss, self.n_classes).to(self.device)

    def record_extra(self) -> tuple[dict, dict]:
        return {"vectorised": self.info}, {"vectorised": self.info}
