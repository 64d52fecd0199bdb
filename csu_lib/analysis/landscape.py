"""Parameter-space geometry of a trained model's loss (docs/methods.md, section 8; definitions are ours).

Every function here evaluates a trained model; nothing trains. The loss is the training
objective (``BCELoss`` or ``CSULoss`` of :mod:`csu_lib.losses`) on a FIXED set of batches (a
subset of the training clips with the labels the model was trained on), in EVAL mode
(BatchNorm uses its running statistics, dropout is off), and with the CSU ``s`` HELD FIXED:
``s`` lives in the loss module, which is never perturbed or differentiated here.

What is perturbed (:func:`perturbed_parameter_names`): the ``weight`` of every convolution
(``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d``) and ``nn.Linear`` module (attention output
projections included), and the input-projection weights of ``nn.MultiheadAttention``
(``in_proj_weight``, or ``q/k/v_proj_weight``). Not perturbed: biases, the weight and bias of
normalisation layers (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, ...), any other parameter
(positional embeddings, CLS tokens, ...), and buffers (BatchNorm running statistics). A
direction (:func:`filter_normalised_direction`, Li et al. 2018) is Gaussian noise of which each
filter - one output unit's slice of a weight: dim 0 for convolutions and linear layers (a row
of a linear weight, an output channel of a convolution), dim 1 for transposed convolutions - is
rescaled to the Frobenius norm of the same filter of the weight; the excluded parameters get 0.
A step ``alpha = 1`` along such a direction therefore moves every filter by its own norm, and
the whole direction has the norm of the perturbed weights.

Surfaces: the loss at ``theta + sum_k c_k d_k`` for many coefficient vectors ``c``. The
batched evaluation stacks ``batch_points`` perturbed copies of the perturbed weights along a
new leading dimension and runs ``torch.vmap`` over ``torch.func.functional_call`` (the
unperturbed parameters and buffers are shared, not copied); the model's own parameters are
never written. The ``*_pointwise`` references write one perturbed parameter set into the model
at a time, run its ordinary forward, and restore the original values exactly (``copy_`` of a
saved clone) at the end; they are the default on the CPU, where they measured faster
(``batch_points=None``: vmap with 16 points on a GPU, point by point on the CPU). Over several batches the loss is the clip-weighted mean of the batch
losses (= the loss over the whole subset for these per-clip-mean losses).

The geometry statistics of the same loss are :mod:`csu_lib.analysis.geometry`; cached probes of
trained runs are :mod:`csu_lib.analysis.landscape_probe`.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.func import functional_call

Direction = dict[str, torch.Tensor]


Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _filter_dims(model: nn.Module) -> dict[str, int]:
    """{parameter name: the dimension indexing its filters} for every perturbed weight."""
    out: dict[str, int] = {}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(module, (*_CONV, *_CONV_T, nn.Linear)) and isinstance(module.weight, nn.Parameter):
            out[f"{prefix}weight"] = 1 if isinstance(module, _CONV_T) else 0
        elif isinstance(module, nn.MultiheadAttention):  # its input projections are linear weights
            for attr in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
                if isinstance(getattr(module, attr, None), nn.Parameter):
                    out[f"{prefix}{attr}"] = 0
    return out


def perturbed_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters the directions perturb: the weights of conv and linear layers
    (in ``named_parameters`` order)."""
    dims = _filter_dims(model)
    return [n for n, _ in model.named_parameters() if n in dims]


def filter_normalised_direction(model: nn.Module, generator: Optional[torch.Generator] = None) -> Direction:
    """A random filter-normalised direction: ``{name: tensor}`` for EVERY parameter of
    ``model`` (same shape, dtype and device), zero for the parameters that are not perturbed.

    For each conv/linear weight W, d ~ N(0, 1) (drawn on the CPU from ``generator``, in the
    order of ``named_parameters``) and each filter d_i is rescaled to ||W_i|| (a filter of zero
    norm gets a zero direction). Biases and normalisation parameters get 0.
    """
    dims = _filter_dims(model)
    out: Direction = {}
    for name, p in model.named_parameters():
        if name not in dims:
            out[name] = torch.zeros_like(p, memory_format=torch.contiguous_format).detach()
            continue
        w = p.detach()
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64)
        dim = dims[name]
        w64 = w.to("cpu", torch.float64).movedim(dim, 0).reshape(w.shape[dim], -1)
        d_rows = d.movedim(dim, 0).reshape(w.shape[dim], -1)
        w_norm = w64.norm(dim=1, keepdim=True)
        d_norm = d_rows.norm(dim=1, keepdim=True)
        scaled = d_rows * torch.where(d_norm > 0, w_norm / d_norm.clamp_min(1e-300), torch.zeros_like(d_norm))
        moved_shape = (w.shape[dim], *[s for i, s in enumerate(w.shape) if i != dim])
        out[name] = scaled.reshape(moved_shape).movedim(0, dim).to(w.device, w.dtype).contiguous()
    return out


def direction_norm(direction: Mapping[str, torch.Tensor]) -> float:
    """The L2 norm of a direction (all its tensors as one vector)."""
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in direction.values()))


def fixed_batches(data, *, n_clips: Optional[int] = 256, batch_size: int = 64, seed: int = 0,
                  split: str = "train", device="cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed subset of a :class:`~csu_lib.training.PreparedData` split as ``[(x, y), ...]``.

    ``n_clips`` clips drawn without replacement by ``numpy.random.default_rng(seed)`` (None: the
    whole split), kept in split order. Training targets are the labels the model was trained on
    (corrupted, when the run was); validation and test targets are the clean labels.
    """
    rows = {"train": data.train_idx, "val": data.val_idx, "test": data.test_idx}[split]
    labels = data.train_labels if split == "train" else data.manifest.labels[rows]
    local = np.arange(len(rows))
    if n_clips is not None and n_clips < len(rows):
        local = np.sort(np.random.default_rng(seed).choice(len(rows), size=n_clips, replace=False))
    out = []
    for start in range(0, len(local), batch_size):
        chunk = local[start:start + batch_size]
        x = data.store.batch(np.asarray(rows)[chunk]).to(device)
        y = torch.as_tensor(np.asarray(labels)[chunk], dtype=torch.float32, device=device)
        out.append((x, y))
    return out


def as_batches(batches: Iterable) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = [(b[0], b[1]) for b in batches]
    if not out:
        raise ValueError("no batches to evaluate the loss on")
    return out


@contextmanager
def eval_mode(*modules: nn.Module):
    """Eval mode inside the block; every module's own training flags are restored after."""
    modules = tuple(m for m in modules if isinstance(m, nn.Module))  # a loss may be a plain function
    saved = [(m, m.training) for mod in modules for m in mod.modules()]
    for mod in modules:
        mod.eval()
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def _directions_list(directions) -> list[Mapping[str, torch.Tensor]]:
    if isinstance(directions, Mapping):
        return [directions]
    return list(directions)


def _points_inputs(directions, coefficients, batches):
    """Checked (directions, coefficients (P, K), batches, total clip count) of a point evaluation."""
    dirs = _directions_list(directions)
    coeffs = np.atleast_2d(np.asarray(coefficients, dtype=np.float64))
    if coeffs.shape[1] != len(dirs):
        raise ValueError(f"coefficients have {coeffs.shape[1]} columns for {len(dirs)} directions")
    batches = as_batches(batches)
    return dirs, coeffs, batches, sum(len(x) for x, _ in batches)


def evaluate_points(model: nn.Module, loss_fn: nn.Module, batches: Batches, directions,
                    coefficients, *, batch_points: Optional[int] = None) -> np.ndarray:
    """Loss at ``theta + sum_k coefficients[p, k] * directions[k]`` for every point p.

    ``directions``: K direction dicts (or one); ``coefficients``: (P, K). ``batch_points``
    points are evaluated per ``torch.vmap`` call; ``None`` takes 16 on a GPU and 1 on the CPU,
    where 1 means :func:`evaluate_points_pointwise` (on this project's 2-core CPU the vmapped
    evaluation was 2-4x slower than point by point: ``bench/landscape_batching.py``). Eval mode,
    no gradients; the model's parameters are restored and its training flags too. Returns (P,)
    float64.
    """
    if batch_points is None:
        on_gpu = any(p.is_cuda for p in model.parameters())
        batch_points = 16 if on_gpu else 1
    if int(batch_points) <= 1:
        return evaluate_points_pointwise(model, loss_fn, batches, directions, coefficients)
    dirs, coeffs, batches, n_total = _points_inputs(directions, coefficients, batches)
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    unknown = sorted(set().union(*[set(d) for d in dirs]) - set(params))
    if unknown:
        raise KeyError(f"direction entries {unknown[:5]} are not parameters of the model")
    active = [n for n in params if any(n in d and bool(torch.any(d[n] != 0)) for d in dirs)]
    stacked_dirs = {n: torch.stack([d[n].to(params[n]) if n in d else torch.zeros_like(params[n])
                                    for d in dirs]) for n in active}
    fixed = {n: p for n, p in params.items() if n not in active}

    def one_point(batched: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, ({**fixed, **batched}, buffers), (x,))
        return loss_fn(logits, y)

    batched_loss = torch.vmap(one_point, in_dims=(0, None, None))
    out = np.empty(len(coeffs), dtype=np.float64)
    if not active:  # every direction is zero: every point is theta itself
        with eval_mode(model, loss_fn), torch.no_grad():
            base = sum(float(one_point({}, x, y)) * len(x) / n_total for x, y in batches)
        out[:] = base
        return out
    with eval_mode(model, loss_fn), torch.no_grad():
        for start in range(0, len(coeffs), max(1, int(batch_points))):
            chunk = coeffs[start:start + batch_points]
            stacked = {}
            for n in active:
                c = torch.as_tensor(chunk, dtype=params[n].dtype, device=params[n].device)
                stacked[n] = params[n].unsqueeze(0) + torch.tensordot(c, stacked_dirs[n], dims=1)
            total = torch.zeros(len(chunk), dtype=torch.float64)
            for x, y in batches:
                total += batched_loss(stacked, x, y).double().cpu() * (len(x) / n_total)
            out[start:start + len(chunk)] = total.numpy()
    return out


def evaluate_points_pointwise(model: nn.Module, loss_fn: nn.Module, batches: Batches, directions,
                              coefficients) -> np.ndarray:
    """Reference for :func:`evaluate_points`: one point at a time, written into the model's
    parameters and evaluated with its ordinary forward; the original values are restored."""
    dirs, coeffs, batches, n_total = _points_inputs(directions, coefficients, batches)
    named = dict(model.named_parameters())
    names = sorted(set().union(*[set(d) for d in dirs]))
    saved = {n: named[n].detach().clone() for n in names}
    out = np.empty(len(coeffs), dtype=np.float64)
    with eval_mode(model, loss_fn), torch.no_grad():
        try:
            for i, c in enumerate(coeffs):
                for n in names:
                    new = saved[n].clone()
                    for ck, d in zip(c, dirs):
                        if n in d:
                            new += float(ck) * d[n].to(new)
                    named[n].copy_(new)
                out[i] = sum(float(loss_fn(model(x), y)) * len(x) / n_total for x, y in batches)
        finally:
            for n in names:
                named[n].copy_(saved[n])
    return out


def _grid_2d(alphas, betas) -> np.ndarray:
    a, b = np.meshgrid(np.asarray(alphas, np.float64), np.asarray(betas, np.float64), indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1)


def loss_surface_1d(model, loss_fn, batches, directions, alphas, *, batch_points: Optional[int] = None) -> np.ndarray:
    """Loss at ``theta + alpha * d`` for every alpha (``directions``: d or [d]; ``batch_points``:
    see :func:`evaluate_points`)."""
    dirs = _directions_list(directions)[:1]
    return evaluate_points(model, loss_fn, batches, dirs, np.asarray(alphas, np.float64)[:, None],
                           batch_points=batch_points)


def loss_surface_1d_pointwise(model, loss_fn, batches, directions, alphas) -> np.ndarray:
    """:func:`loss_surface_1d`, one point at a time (the reference)."""
    dirs = _directions_list(directions)[:1]
    return evaluate_points_pointwise(model, loss_fn, batches, dirs, np.asarray(alphas, np.float64)[:, None])


def loss_surface_2d(model, loss_fn, batches, directions, alphas, betas, *,
                    batch_points: Optional[int] = None) -> np.ndarray:
    """Loss at ``theta + alpha * d1 + beta * d2``: array (len(alphas), len(betas))
    (``batch_points``: see :func:`evaluate_points`)."""
    dirs = _directions_list(directions)
    if len(dirs) != 2:
        raise ValueError(f"a 2-D surface needs two directions, got {len(dirs)}")
    values = evaluate_points(model, loss_fn, batches, dirs, _grid_2d(alphas, betas), batch_points=batch_points)
    return values.reshape(len(alphas), len(betas))


def loss_surface_2d_pointwise(model, loss_fn, batches, directions, alphas, betas) -> np.ndarray:
    """:func:`loss_surface_2d`, one point at a time (the reference)."""
    dirs = _directions_list(directions)
    if len(dirs) != 2:
        raise ValueError(f"a 2-D surface needs two directions, got {len(dirs)}")
    return evaluate_points_pointwise(model, loss_fn, batches, dirs, _grid_2d(alphas, betas)).reshape(
        len(alphas), len(betas))
