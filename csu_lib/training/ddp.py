"""The torchrun backend: the same runs trained with DistributedDataParallel over the ranks of
:mod:`csu_lib.training.distributed` (``train.batch_size`` is the global batch).

- every rank draws the same seeded order and takes a contiguous share of each global batch; a
  method that transforms batches (mixup, PSL chunks) sees the whole global batch with the
  one-process random draws, and the share is cut afterwards (:func:`rank_batch`);
- model and loss are wrapped together in DDP (:class:`LossWrapped`), so the per-class ``s``
  gradients are all-reduced with the model's; after every epoch the ranks compare their
  ``log sigma^2`` trajectory and a fingerprint of every parameter bit for bit;
- BatchNorm becomes SyncBatchNorm on CUDA (torch refuses it on CPU tensors);
- rank 0 evaluates and broadcasts the metrics, so every rank takes the same early-stopping
  decision, and it alone writes files; every rank's RNG state is kept in the checkpoint.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import metrics as M
from ..features import FeatureLoader
from .distributed import DistContext, shard, share_weight
from .engine import RunState
from .methods import Method
from .predict import predict
from .seeding import seed_rank
from .single import SingleProcess


class LossWrapped(nn.Module):
    """Model and loss in one module, so that DistributedDataParallel all-reduces the gradients
    of the loss's parameters (CSU's per-class ``s``) together with the model's.

    ``forward(x, y, mask)`` returns the loss; the model runs under bfloat16 autocast when
    ``amp`` is set (CUDA), the loss always in float32 (as in the one-process loop). ``observe``
    (optional) sees every ``(logits, y, mask)`` the loss receives (the epoch's s* sums).
    """

    def __init__(self, model: nn.Module, loss: nn.Module, amp: bool,
                 observe: Optional[Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], None]] = None):
        super().__init__()
        self.model = model
        self.loss = loss
        self.amp = amp
        self.observe = observe

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(x)
        if self.observe is not None:
            self.observe(logits, y, mask)
        return self.loss(logits, y, mask)


def wrap_ddp(model: nn.Module, loss: nn.Module, ctx: DistContext, amp: bool, observe=None) -> nn.Module:
    """``DistributedDataParallel(LossWrapped(model, loss, amp, observe))`` on the rank's device."""
    joint = LossWrapped(model, loss, amp, observe)
    kwargs: dict[str, Any] = {"broadcast_buffers": True}
    if ctx.device.type == "cuda":
        kwargs.update(device_ids=[ctx.device.index], output_device=ctx.device.index)
    return DDP(joint, **kwargs)


def maybe_sync_batchnorm(model: nn.Module, ctx: DistContext) -> nn.Module:
    """BatchNorm layers synchronised across ranks on CUDA; unchanged on the CPU."""
    if ctx.sync_batchnorm:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def rank_batch(batch: np.ndarray, ctx: DistContext, feats, train_idx: np.ndarray, targets: torch.Tensor,
               mask: Optional[torch.Tensor], method: Method, generator: torch.Generator):
    """This rank's share of one global batch: ``(x, y, mask, loss weight)``.

    A method that transforms batches (mixup, PSL chunks) sees the whole global batch, exactly as
    in a one-process run (same generator draws, partners from the whole batch); the share is cut
    afterwards. Plain training loads the share only. An empty share (a last batch smaller than
    the world size) trains on one clip with loss weight 0, so that every rank joins the
    all-reduce.
    """
    n = len(batch)
    share = shard(np.arange(n), ctx.rank, ctx.world_size)
    weight = share_weight(len(share), n, ctx.world_size)
    lo, hi = (int(share[0]), int(share[-1]) + 1) if len(share) else (0, 1)
    device = targets.device
    if not method.transforms_batches:  # the identity: no need for the whole batch
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


class Distributed(SingleProcess):
    """:class:`SingleProcess` on every rank of a torchrun job, synchronised by DDP."""

    def __init__(self, state: RunState, ctx: DistContext, feats: FeatureLoader):
        self.ctx = ctx
        super().__init__(state, ctx.device, feats)
        self.is_main = ctx.is_main
        self.rank_checks = 0
        self._share_counts = True
        if not ctx.is_main:
            seed_rank(state.config.train.seed, ctx.rank, 0)  # rank 0 keeps the one-process RNG stream (dropout)
        self.ddp: Optional[nn.Module] = None

    def _prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return maybe_sync_batchnorm(model, self.ctx)

    def wrap(self) -> None:
        """Wrap model and loss in DDP, once every rank has read its checkpoint."""
        self.ctx.barrier()  # every rank has read the checkpoint before rank 0 may replace it
        self.ddp = wrap_ddp(self.model, self.loss_fn, self.ctx, amp=self.amp,
                            observe=None if self.optimum is None else self._observe_share)

    def restore(self, ckpts: Sequence[dict], states: Sequence[RunState]) -> None:
        super().restore(ckpts, states)
        ckpt, ctx, seed = ckpts[0], self.ctx, states[0].config.train.seed
        start_epoch = ckpt["epoch"] + 1
        rank_states = ckpt.get("torch_rng_ranks")
        if rank_states is not None and len(rank_states) == ctx.world_size:
            torch.set_rng_state(rank_states[ctx.rank])
            cuda_states = ckpt.get("cuda_rng_ranks")
            if self.device.type == "cuda" and cuda_states is not None and cuda_states[ctx.rank] is not None:
                torch.cuda.set_rng_state(cuda_states[ctx.rank], self.device)
        elif not ctx.is_main:
            seed_rank(seed, ctx.rank, start_epoch)
        if not ctx.is_main:
            ckpt["best"] = {**ckpt["best"], "state": None}  # rank 0 alone keeps the best weights

    def model_state(self, k: int) -> Optional[dict]:
        return super().model_state(k) if self.is_main else None

    def begin_epoch(self, states: Sequence[RunState], orders: Sequence[np.ndarray], batch_size: int) -> None:
        self.model.train()  # no prefetch thread: every rank reads only its share

    def _batch(self, state: RunState, rows: np.ndarray, gen: torch.Generator):
        return rank_batch(rows, self.ctx, self.feats, state.data.train_idx, state.targets, state.mask, state.method,
                          gen)

    def _loss(self, x: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor],
              weight: Optional[float]) -> torch.Tensor:
        self._share_counts = weight > 0  # an empty share trains on one clip at weight 0: not part of s*
        return self.ddp(x, y, m) * weight  # gradients (the model's and s's) are averaged over ranks in backward()

    def _observe_share(self, logits: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor]) -> None:
        if self._share_counts:
            self.optimum.observe(logits, y, m)

    def epoch_optimum(self) -> Optional[np.ndarray]:
        """The s* of the epoch's global batches: every rank's sums added (a collective call)."""
        if self.optimum is None:
            return None
        return self.optimum.take(self.log_sigma2().cpu().numpy(), reduce=self.ctx.all_reduce_sum)

    def end_epoch(self, epoch: int, loss_sum: torch.Tensor, s_buf: Optional[torch.Tensor]) -> torch.Tensor:
        """The mean loss of the global batches; the ranks must agree on s and on the weights."""
        ctx = self.ctx
        loss_sum = ctx.all_reduce_sum(loss_sum) / ctx.world_size
        if s_buf is not None:
            ctx.check_identical(f"the sigma trajectory (loss.s) of epoch {epoch}", s_buf[:, 0])
        ctx.check_identical(f"the parameters after epoch {epoch}", _param_checksums(self.model, self.loss_fn))
        self.rank_checks += 1
        return loss_sum

    def validate(self, states: Sequence[RunState]) -> list[Optional[dict]]:
        """Rank 0 evaluates; every rank takes the same early-stopping decision from its numbers."""
        data = states[0].data
        val = None
        if self.is_main:
            scores = predict(self.model, self.feats, data.val_idx, self.eval_batch_size, self.device)
            val = M.evaluate(scores, data.manifest.labels[data.val_idx])
        return [self.ctx.broadcast_object(val)]

    def train_scores(self, states: Sequence[RunState], positions: Optional[np.ndarray] = None
                     ) -> list[Optional[np.ndarray]]:
        """Rank 0 scores the training clips (the others wait for its s: :meth:`set_log_sigma2`)."""
        return super().train_scores(states, positions) if self.is_main else [None]

    def set_log_sigma2(self, k: int, values: Optional[np.ndarray]) -> None:
        super().set_log_sigma2(k, self.ctx.broadcast_object(values))

    def rng_state(self) -> dict:
        """Every rank's RNG state (a collective: all ranks call it)."""
        cuda_state = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        gathered = self.ctx.all_gather_object((torch.get_rng_state(), cuda_state))
        return {**super().rng_state(), "world_size": self.ctx.world_size,
                "torch_rng_ranks": [g[0] for g in gathered], "cuda_rng_ranks": [g[1] for g in gathered]}

    def record_extra(self) -> tuple[dict, dict]:
        described = self.ctx.describe()
        return {"distributed": described}, {"distributed": {**described, "rank_checks": self.rank_checks}}
