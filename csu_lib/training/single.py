"""The default backend: one run in this process (:func:`csu_lib.training.train_run`)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .. import metrics as M
from ..features import FeatureLoader
from ..losses import build_loss, reliability
from .engine import Backend, RunState
from .epoch_optimum import EpochOptimum
from .predict import predict, recalibrate_batchnorm
from .optimiser import make_optimizer
from .seeding import fixed_subset, init_model


class SingleProcess(Backend):
    """One model, its loss and one optimiser on ``device``: the ordinary training step
    (bfloat16 autocast on CUDA when ``train.amp``; the loss always in float32)."""

    def __init__(self, state: RunState, device: torch.device, feats: FeatureLoader):
        config, tc = state.config, state.config.train
        n_classes = state.data.manifest.n_classes
        self.device, self.feats, self.n = device, feats, 1
        self.model = self._prepare_model(init_model(config, n_classes).to(device))
        if tc.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = build_loss(config.loss, n_classes).to(device)
        self._reliability = reliability(self.loss_fn)
        self.learns_sigma = self._reliability is not None
        #: the sums behind the s* of the epoch's own training steps (fed by :meth:`_loss`)
        self.optimum = None if self._reliability is None else \
            EpochOptimum(self._reliability, 1, self._reliability.log_sigma2().numel(), device)
        self.optimizer = make_optimizer(tc, self.model.parameters(), self._reliability,
                                        reliability_lr=config.loss.csu_lr)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.amp = tc.amp and device.type == "cuda"
        self.eval_batch_size = tc.eval_batch_size
        self.extra: dict = {}

    def _prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Hook for a subclass (DDP converts BatchNorm to SyncBatchNorm)."""
        return model

    # -- checkpoints --------------------------------------------------------------------------
    def restore(self, ckpts: Sequence[dict], states: Sequence[RunState]) -> None:
        (ckpt,) = ckpts
        self.model.load_state_dict(ckpt["model"])
        self.loss_fn.load_state_dict(ckpt["loss"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        if self.device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        if ckpt.get("vectorised"):  # begun in a vectorised group (csu_lib.training.stacked), finished alone
            info = ckpt["vectorised"]
            states[0].extra["vectorised"] = {**info, "alone_from_epoch": info.get("alone_from_epoch",
                                                                                  ckpt["epoch"] + 1)}

    def model_state(self, k: int) -> Optional[dict]:
        return {key: v.detach().cpu().clone() for key, v in self.model.state_dict().items()}

    def loss_state(self, k: int) -> dict:
        return {key: v.detach().cpu().clone() for key, v in self.loss_fn.state_dict().items()}

    def optimizer_state(self, k: int) -> dict:
        return self.optimizer.state_dict()

    # -- training -----------------------------------------------------------------------------
    def begin_epoch(self, states: Sequence[RunState], orders: Sequence[np.ndarray], batch_size: int) -> None:
        self.model.train()
        state, order = states[0], orders[0]
        steps = (len(order) + batch_size - 1) // batch_size
        # streamed stores on CUDA: read the epoch's batches ahead into pinned memory
        self.feats.prefetch(state.data.train_idx[order[s * batch_size:(s + 1) * batch_size]] for s in range(steps))

    def _batch(self, state: RunState, rows: np.ndarray, gen: torch.Generator):
        """(x, y, mask, loss weight) of one batch: the features, targets and mask of ``rows``
        after the method's batch transform (the weight is a DDP share's; None here)."""
        local = torch.as_tensor(rows, device=self.device)
        x = self.feats(state.data.train_idx[rows])
        m = None if state.mask is None else state.mask[local]
        return (*state.method.transform_batch(x, state.targets[local], m, rows, gen), None)

    def _set_lr(self, lr_scale: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * lr_scale

    def _loss(self, x: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor],
              weight: Optional[float]) -> torch.Tensor:
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(x)
        if self.optimum is not None:
            self.optimum.observe(logits, y, m)
        return self.loss_fn(logits, y, m)

    def step(self, states: Sequence[RunState], rows: Sequence[np.ndarray], gens: Sequence[torch.Generator],
             lr_scales: Sequence[float]) -> torch.Tensor:
        x, y, m, weight = self._batch(states[0], rows[0], gens[0])
        self._set_lr(lr_scales[0])
        loss = self._loss(x, y, m, weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self._reliability is not None:
            self._reliability.project_()
        return loss.detach().reshape(1)

    def log_sigma2(self) -> torch.Tensor:
        return self._reliability.log_sigma2()[None]

    def recalibrate_bn(self, states: Sequence[RunState]) -> None:
        data, tc = states[0].data, states[0].config.train
        rows = data.train_idx[fixed_subset(len(data.train_idx), tc.bn_recalibration)]
        recalibrate_batchnorm(self.model, self.feats, rows, tc.batch_size, self.device)

    def epoch_optimum(self) -> Optional[np.ndarray]:
        return None if self.optimum is None else self.optimum.take(self.log_sigma2().cpu().numpy())

    def validate(self, states: Sequence[RunState]) -> list[Optional[dict]]:
        data = states[0].data
        scores = predict(self.model, self.feats, data.val_idx, self.eval_batch_size, self.device)
        return [M.evaluate(scores, data.manifest.labels[data.val_idx])]

    def final_model(self, k: int, state: RunState) -> tuple[torch.nn.Module, torch.nn.Module]:
        return self.model, self.loss_fn

    def reliability(self):
        return self._reliability

    def train_scores(self, states: Sequence[RunState], positions: Optional[np.ndarray] = None
                     ) -> list[Optional[np.ndarray]]:
        rows = states[0].data.train_idx if positions is None else states[0].data.train_idx[positions]
        return [predict(self.model, self.feats, rows, self.eval_batch_size, self.device)]

    def set_log_sigma2(self, k: int, values: Optional[np.ndarray]) -> None:
        self._reliability.load_log_sigma2_(values)
