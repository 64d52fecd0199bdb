"""Parameter-space geometry of a trained model's loss (methods.md §8; definitions are ours).

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

Geometry statistics (:func:`geometry_summary`), all with respect to the perturbed parameters
by default:

- top Hessian eigenvalue: power iteration on Hessian-vector products (double backward); it
  converges to the eigenvalue of largest MAGNITUDE (at a minimum: the largest one).
- Hessian trace: Hutchinson's estimator E[v^T H v] with Rademacher v.
- epsilon-sharpness: max of L(theta + delta) - L(theta) over ||delta||_2 <= eps * ||theta||_2
  (theta: the perturbed parameters, one flat vector). Approximated by projected normalised
  gradient ascent: delta_0 = 0, delta_{t+1} = P(delta_t + step * g_t / ||g_t||) with P the
  projection onto the ball and step = the radius by default (the first step is SAM's ascent
  step); a zero gradient (an exact stationary point) is replaced by a seeded random direction.
  The largest rise among the visited points is reported: a LOWER bound of the true maximum
  that tightens with more steps. ``relative`` in the details is Keskar et al.'s
  100 * rise / (1 + L(theta)).
- mean loss rise: mean over ``n_directions`` random filter-normalised directions d of
  L(theta + radius * d) - L(theta) (radius in the units of the surfaces' alpha).
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.func import functional_call

from .io import atomic_path, atomic_write_json, read_json

Direction = dict[str, torch.Tensor]
Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]
LossClosure = Callable[[], torch.Tensor]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


# ---------------------------------------------------------------------------------------------
# Directions


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


# ---------------------------------------------------------------------------------------------
# Data


def fixed_batches(data, *, n_clips: Optional[int] = 256, batch_size: int = 64, seed: int = 0,
                  split: str = "train", device="cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed subset of a :class:`~csu_lib.train.PreparedData` split as ``[(x, y), ...]``.

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


def _as_batches(batches: Iterable) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = [(b[0], b[1]) for b in batches]
    if not out:
        raise ValueError("no batches to evaluate the loss on")
    return out


@contextmanager
def _eval_mode(*modules: nn.Module):
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


# ---------------------------------------------------------------------------------------------
# Surfaces


def _points_inputs(directions, coefficients, batches):
    """Checked (directions, coefficients (P, K), batches, total clip count) of a point evaluation."""
    dirs = _directions_list(directions)
    coeffs = np.atleast_2d(np.asarray(coefficients, dtype=np.float64))
    if coeffs.shape[1] != len(dirs):
        raise ValueError(f"coefficients have {coeffs.shape[1]} columns for {len(dirs)} directions")
    batches = _as_batches(batches)
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
        with _eval_mode(model, loss_fn), torch.no_grad():
            base = sum(float(one_point({}, x, y)) * len(x) / n_total for x, y in batches)
        out[:] = base
        return out
    with _eval_mode(model, loss_fn), torch.no_grad():
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
    with _eval_mode(model, loss_fn), torch.no_grad():
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


# ---------------------------------------------------------------------------------------------
# Curvature and sharpness


def make_loss_closure(model: nn.Module, loss_fn: nn.Module, batches: Batches) -> LossClosure:
    """A closure returning the (differentiable) clip-weighted loss of ``model`` over
    ``batches`` with the model's current parameters. It does not change the model's mode: call
    it in eval mode (as :func:`geometry_summary` does)."""
    batches = _as_batches(batches)
    n_total = sum(len(x) for x, _ in batches)

    def closure() -> torch.Tensor:
        return sum(loss_fn(model(x), y) * (len(x) / n_total) for x, y in batches)

    return closure


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _norm(v: Sequence[torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in v))


def _gradients(loss: torch.Tensor, params: Sequence[torch.Tensor], create_graph: bool) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _hvp_fn(loss_closure: LossClosure, params: Sequence[torch.Tensor]):
    """A function v -> H v (one double backward each; the gradient graph is built once)."""
    grads = _gradients(loss_closure(), params, create_graph=True)
    live = [i for i, g in enumerate(grads) if g.requires_grad]

    def hvp(v: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if not live:  # the gradient does not depend on the parameters: H = 0
            return [torch.zeros_like(p) for p in params]
        gv = sum((grads[i] * v[i]).sum() for i in live)
        hv = torch.autograd.grad(gv, params, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(hv, params)]

    return hvp


def _randn_like(params: Sequence[torch.Tensor], generator: Optional[torch.Generator]) -> list[torch.Tensor]:
    return [torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.device, p.dtype) for p in params]


def top_hessian_eigenvalue(loss_closure: LossClosure, params: Sequence[torch.Tensor], iters: int = 50,
                           tol: float = 1e-4, generator: Optional[torch.Generator] = None, *,
                           return_info: bool = False):
    """Dominant eigenvalue of the Hessian of ``loss_closure()`` w.r.t. ``params`` by power
    iteration on Hessian-vector products (seeded Gaussian start vector; stops when the Rayleigh
    quotient changes by less than ``tol`` relative, or after ``iters`` products).

    Returns the eigenvalue (float); with ``return_info`` also ``{"iters", "converged",
    "history"}``. The parameters are not changed.
    """
    params = list(params)
    hvp = _hvp_fn(loss_closure, params)
    v = _randn_like(params, generator)
    n = _norm(v)
    v = [t / n for t in v]
    eig, history, converged = float("nan"), [], False
    for i in range(int(iters)):
        hv = hvp(v)
        new = float(_dot(hv, v))
        history.append(new)
        hn = _norm(hv)
        if hn == 0:
            eig, converged = 0.0, True
            break
        v = [t / hn for t in hv]
        if i > 0 and abs(new - eig) <= tol * max(abs(eig), 1e-12):
            eig, converged = new, True
            break
        eig = new
    if return_info:
        return eig, {"iters": len(history), "converged": converged, "history": history}
    return eig


def hessian_trace(loss_closure: LossClosure, params: Sequence[torch.Tensor], n_samples: int = 100,
                  generator: Optional[torch.Generator] = None, *, return_info: bool = False):
    """Hutchinson's estimate of the Hessian trace: the mean of v^T H v over ``n_samples``
    Rademacher vectors v (entries +-1 from ``generator``). With ``return_info`` also
    ``{"n_samples", "std_error", "samples"}``."""
    params = list(params)
    hvp = _hvp_fn(loss_closure, params)
    samples = []
    for _ in range(int(n_samples)):
        v = [(torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p.device, p.dtype) for p in params]
        samples.append(float(_dot(hvp(v), v)))
    est = float(np.mean(samples))
    if return_info:
        se = float(np.std(samples, ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else float("nan")
        return est, {"n_samples": len(samples), "std_error": se, "samples": samples}
    return est


def epsilon_sharpness(loss_closure: LossClosure, params: Sequence[torch.Tensor], epsilon: float = 1e-3, *,
                      steps: int = 5, step_size: Optional[float] = None,
                      generator: Optional[torch.Generator] = None, return_info: bool = False):
    """Max loss rise within the L2 ball of radius ``epsilon * ||params||`` (see the module
    docstring): projected normalised gradient ascent for ``steps`` gradient steps (step size:
    the radius unless given), the largest rise among the visited points (>= 0, a lower bound of
    the true maximum). The parameters are modified during the search and restored exactly.

    With ``return_info`` also ``{"radius", "loss", "relative" (100 * rise / (1 + loss)),
    "rises"}``.
    """
    params = list(params)
    originals = [p.detach().clone() for p in params]
    radius = float(epsilon) * _norm(originals)
    step = radius if step_size is None else float(step_size)
    delta = [torch.zeros_like(p) for p in originals]
    rises: list[float] = []
    try:
        with torch.enable_grad():
            loss = loss_closure()
            base = float(loss.detach())
            for t in range(int(steps) + 1):
                if t > 0:
                    with torch.no_grad():
                        for p, p0, d in zip(params, originals, delta):
                            p.copy_(p0 + d)
                    loss = loss_closure()
                    rises.append(float(loss.detach()) - base)
                if t == int(steps):
                    break
                g = [gi.detach() for gi in _gradients(loss, params, create_graph=False)]
                gn = _norm(g)
                if gn == 0 or not math.isfinite(gn):
                    g = _randn_like(params, generator)
                    gn = _norm(g)
                delta = [d + step * gi / gn for d, gi in zip(delta, g)]
                dn = _norm(delta)
                if dn > radius:
                    delta = [d * (radius / dn) for d in delta]
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, originals):
                p.copy_(p0)
    rise = max([0.0, *rises])
    if return_info:
        return rise, {"radius": radius, "loss": base, "relative": 100.0 * rise / (1.0 + base), "rises": rises}
    return rise


def mean_loss_rise(model: nn.Module, loss_fn: nn.Module, batches: Batches, *, radius: float = 0.1,
                   n_directions: int = 10, generator: Optional[torch.Generator] = None,
                   batch_points: Optional[int] = None, return_info: bool = False):
    """Mean over ``n_directions`` random filter-normalised directions d of
    L(theta + radius * d) - L(theta) (eval mode, batched evaluation, s fixed). With
    ``return_info`` also ``{"loss", "rises", "std"}``."""
    dirs = [filter_normalised_direction(model, generator) for _ in range(int(n_directions))]
    coeffs = np.vstack([np.zeros(len(dirs)), float(radius) * np.eye(len(dirs))])
    losses = evaluate_points(model, loss_fn, batches, dirs, coeffs, batch_points=batch_points)
    rises = losses[1:] - losses[0]
    mean = float(rises.mean())
    if return_info:
        return mean, {"loss": float(losses[0]), "rises": rises.tolist(),
                      "std": float(rises.std(ddof=1)) if len(rises) > 1 else float("nan")}
    return mean


def geometry_summary(model: nn.Module, loss_fn: nn.Module, batches: Batches, *,
                     param_names: Optional[Sequence[str]] = None, power_iters: int = 50, tol: float = 1e-4,
                     trace_samples: int = 50, epsilon: float = 1e-3, ascent_steps: int = 5,
                     radius: float = 0.1, n_directions: int = 10, seed: int = 0,
                     batch_points: Optional[int] = None) -> dict[str, Any]:
    """The four geometry statistics of one model, in eval mode with s fixed.

    ``param_names``: the parameters the curvature and sharpness are taken over (default:
    :func:`perturbed_parameter_names`). Every statistic draws from its own
    ``torch.Generator`` seeded by ``seed`` (so each is reproducible alone). Returns
    ``{"loss", "top_eigenvalue", "hessian_trace", "epsilon_sharpness", "mean_loss_rise",
    "settings": {...}, "details": {...}}``; the model is left as it was (parameters and mode).
    """
    names = list(param_names) if param_names is not None else perturbed_parameter_names(model)
    named = dict(model.named_parameters())
    missing = [n for n in names if n not in named]
    if missing:
        raise KeyError(f"parameters {missing[:5]} are not in the model")
    params = [named[n] for n in names]
    batches = _as_batches(batches)

    def gen(stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(int(seed) * 1000 + stream)

    with _eval_mode(model, loss_fn):
        closure = make_loss_closure(model, loss_fn, batches)
        eig, eig_info = top_hessian_eigenvalue(closure, params, power_iters, tol, gen(1), return_info=True)
        trace, trace_info = hessian_trace(closure, params, trace_samples, gen(2), return_info=True)
        sharp, sharp_info = epsilon_sharpness(closure, params, epsilon, steps=ascent_steps, generator=gen(3),
                                              return_info=True)
    rise, rise_info = mean_loss_rise(model, loss_fn, batches, radius=radius, n_directions=n_directions,
                                     generator=gen(4), batch_points=batch_points, return_info=True)
    return {
        "loss": sharp_info["loss"], "top_eigenvalue": eig, "hessian_trace": trace,
        "epsilon_sharpness": sharp, "mean_loss_rise": rise,
        "settings": {"param_names": names, "n_parameters": int(sum(p.numel() for p in params)),
                     "n_clips": int(sum(len(x) for x, _ in batches)), "power_iters": power_iters, "tol": tol,
                     "trace_samples": trace_samples, "epsilon": epsilon, "ascent_steps": ascent_steps,
                     "radius": radius, "n_directions": n_directions, "seed": seed, "mode": "eval",
                     "sigma": "fixed"},
        "details": {"top_eigenvalue": {k: v for k, v in eig_info.items() if k != "history"},
                    "hessian_trace": {"std_error": trace_info["std_error"]},
                    "epsilon_sharpness": {k: v for k, v in sharp_info.items() if k != "rises"},
                    "mean_loss_rise": {"std": rise_info["std"]}},
    }


# ---------------------------------------------------------------------------------------------
# Persistence


def _landscape_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".npz", ".json"):
        path = path.with_suffix("")
    return path.parent / f"{path.name}.npz", path.parent / f"{path.name}.json"


def save_landscape(path: str | os.PathLike, arrays: Mapping[str, Any], settings: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``<path>.npz`` (the arrays) and then ``<path>.json`` (the settings and the array
    names; written last, so it marks a complete result), each atomically. Returns both paths."""
    npz, js = _landscape_paths(path)
    arrays = {str(k): (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
              for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; save numeric arrays only")
    with atomic_path(npz) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    atomic_write_json(js, {"format": 1, "arrays": sorted(arrays), "settings": dict(settings)})
    return npz, js


def load_landscape(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, settings) written by :func:`save_landscape`."""
    npz, js = _landscape_paths(path)
    if not js.is_file() or not npz.is_file():
        raise FileNotFoundError(f"no complete landscape at {npz.with_suffix('')} (need {npz.name} and {js.name})")
    meta = read_json(js)
    with np.load(npz, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    if sorted(arrays) != meta["arrays"]:
        raise ValueError(f"{npz} holds arrays {sorted(arrays)}, {js.name} lists {meta['arrays']}")
    return arrays, meta["settings"]


def probe_run(record, settings: Mapping[str, Any], cache_root: str | os.PathLike, *,
              data_dir=None, cache_dir=None) -> dict[str, np.ndarray]:
    """1-D curve, 2-D surface and geometry statistics of one trained run, cached on disk.

    ``settings``: ``n_clips``, ``span``, ``n_points_1d``, ``n_points_2d``, ``power_iters``,
    ``trace_samples``, ``epsilon``, ``radius``, ``n_directions``, ``seed`` and ``eval_loss``:
    ``"own"`` probes the run's training loss (CSU with its learned s -- scaled by the learned
    multipliers 1/sigma^2, so its curvature is larger by about that factor), ``"bce"`` probes
    every run under plain BCE, which compares the geometry of the weights themselves. The result is saved
    under ``cache_root`` keyed by the run and a stable hash of the settings; a second call loads
    it instead of recomputing. Returns arrays ``alphas``, ``curve_1d``, ``grid_2d``,
    ``surface_2d`` and one scalar array per statistic of :func:`geometry_summary`.
    """
    import hashlib
    import json

    from .probes import load_model
    from .train import prepare_data

    settings = dict(settings)
    settings.setdefault("eval_loss", "own")
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_root) / f"{Path(record.path).name}-{key}"
    if path.with_suffix(".json").is_file():
        return load_landscape(path)[0]
    data = prepare_data(record.config, data_dir=data_dir, cache_dir=cache_dir, progress=False)
    model, loss_fn = load_model(record)
    if settings["eval_loss"] == "bce":  # compare the weights' geometry under one common loss
        from .losses import BCELoss

        loss_fn = BCELoss()
    batches = fixed_batches(data, n_clips=int(settings["n_clips"]), seed=int(settings["seed"]))
    gen = torch.Generator().manual_seed(int(settings["seed"]))
    d1 = filter_normalised_direction(model, gen)
    d2 = filter_normalised_direction(model, gen)
    alphas = np.linspace(-settings["span"], settings["span"], int(settings["n_points_1d"]))
    grid = np.linspace(-settings["span"], settings["span"], int(settings["n_points_2d"]))
    geo = geometry_summary(model, loss_fn, batches, power_iters=int(settings["power_iters"]),
                           trace_samples=int(settings["trace_samples"]), epsilon=float(settings["epsilon"]),
                           radius=float(settings["radius"]), n_directions=int(settings["n_directions"]),
                           seed=int(settings["seed"]))
    arrays = {"alphas": alphas, "curve_1d": loss_surface_1d(model, loss_fn, batches, [d1], alphas),
              "grid_2d": grid, "surface_2d": loss_surface_2d(model, loss_fn, batches, [d1, d2], grid, grid),
              **{k: np.array(float(geo[k])) for k in GEOMETRY_KEYS}}
    save_landscape(path, arrays, {**settings, "run": str(record.path), "geometry_settings": geo["settings"]})
    return arrays


#: The scalar statistics :func:`probe_run` stores (those of :func:`geometry_summary`).
GEOMETRY_KEYS = ("loss", "top_eigenvalue", "hessian_trace", "epsilon_sharpness", "mean_loss_rise")

#: Probe sizes per profile (smoke: seconds, for the tests; quick: the CPU main job).
PROBE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(n_clips=64, span=1.0, n_points_1d=9, n_points_2d=5, power_iters=5, trace_samples=5,
                  epsilon=1e-3, radius=0.1, n_directions=3),
    "quick": dict(n_clips=64, span=1.0, n_points_1d=15, n_points_2d=9, power_iters=6, trace_samples=6,
                  epsilon=1e-3, radius=0.1, n_directions=3),
    "paper": dict(n_clips=1024, span=1.0, n_points_1d=51, n_points_2d=31, power_iters=100, trace_samples=100,
                  epsilon=1e-3, radius=0.1, n_directions=20),
}


def probe_settings(profile: str, *, seed: int = 0, eval_loss: str = "own", **overrides) -> dict[str, Any]:
    """The :func:`probe_run` settings of a profile; ``None`` overrides are ignored, an unknown
    key or a non-positive size is a :class:`~csu_lib.errors.ConfigError` naming it."""
    from .errors import ConfigError, unknown_name

    if profile not in PROBE_SETTINGS:
        raise unknown_name("profile", profile, PROBE_SETTINGS)
    if eval_loss not in ("own", "bce"):
        raise ConfigError(f"eval_loss must be 'own' or 'bce', got {eval_loss!r}")
    settings = dict(PROBE_SETTINGS[profile], seed=int(seed), eval_loss=eval_loss)
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in settings:
            raise ConfigError(f"unknown landscape setting {key!r}; valid: {sorted(settings)}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{key} must be a positive number, got {value!r}")
        settings[key] = type(settings[key])(value)
    return settings
