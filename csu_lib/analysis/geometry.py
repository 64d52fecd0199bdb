"""Geometry statistics of a trained model's loss around its weights (docs/methods.md, section 8; definitions
are ours), all with respect to the perturbed parameters of :mod:`csu_lib.analysis.landscape` by
default, in eval mode with the learned reliability (CSU's s) held fixed:

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
  100 * rise / (1 + L(theta)) taken relative to the DATA term of the loss:
  100 * rise / (1 + L(theta) - C0), with C0 the constant regulariser of the learned reliability
  (:func:`regulariser_constant`; CSU: sum_c s_c / 2, or mean_c s_c / 2 with
  ``class_reduction="mean"``; 0 for BCE). s is held fixed, so C0 does not move the rise, but it
  can be large and negative (1 + L < 0 would flip the sign); the data term
  L - C0 = scale * exp(-s_c) * BCE (reduced) is >= 0.
- mean loss rise: mean over ``n_directions`` random filter-normalised directions d of
  L(theta + radius * d) - L(theta) (radius in the units of the surfaces' alpha).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .landscape import (Batches, as_batches, eval_mode, evaluate_points, filter_normalised_direction,
                        perturbed_parameter_names)
from ..losses import reliability

LossClosure = Callable[[], torch.Tensor]


def make_loss_closure(model: nn.Module, loss_fn: nn.Module, batches: Batches) -> LossClosure:
    """A closure returning the (differentiable) clip-weighted loss of ``model`` over
    ``batches`` with the model's current parameters. It does not change the model's mode: call
    it in eval mode (as :func:`geometry_summary` does)."""
    batches = as_batches(batches)
    n_total = sum(len(x) for x, _ in batches)

    def closure() -> torch.Tensor:
        return sum(loss_fn(model(x), y) * (len(x) / n_total) for x, y in batches)

    return closure


def regulariser_constant(loss_fn, batches: Batches) -> float:
    """C0: the part of ``loss_fn``'s clip-weighted value over ``batches`` that does not depend
    on the network, with the learned reliability held fixed -- for CSU the regulariser
    sum_c s_c / 2 (mean_c s_c / 2 with ``class_reduction="mean"``); 0 for a loss without a
    learned reliability (BCE). The loss minus C0 is the data term scale * exp(-s) * BCE (>= 0),
    the base of the relative epsilon-sharpness.

    Computed as the loss of a copy of the reliability with its data-term factor ``scale`` set
    to 0, on the batches' targets (so a regulariser that weights s by the targets is covered
    too); ``loss_fn`` itself is not changed."""
    rel = reliability(loss_fn)
    if rel is None:
        return 0.0
    zero = copy.deepcopy(rel)
    zero.scale = 0.0
    batches = as_batches(batches)
    n_total = sum(len(y) for _, y in batches)
    with torch.no_grad():
        return float(sum(float(zero(torch.zeros(y.shape, device=y.device), y)) * (len(y) / n_total)
                         for _, y in batches))


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
                      generator: Optional[torch.Generator] = None, constant: float = 0.0,
                      return_info: bool = False):
    """Max loss rise within the L2 ball of radius ``epsilon * ||params||`` (see the module
    docstring): projected normalised gradient ascent for ``steps`` gradient steps (step size:
    the radius unless given), the largest rise among the visited points (>= 0, a lower bound of
    the true maximum). The parameters are modified during the search and restored exactly.

    ``constant``: C0, the part of the loss that does not depend on ``params``
    (:func:`regulariser_constant`); it only enters ``relative``. With ``return_info`` also
    ``{"radius", "loss", "data_loss" (loss - C0), "relative" (100 * rise / (1 + loss - C0)),
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
        data = base - float(constant)
        return rise, {"radius": radius, "loss": base, "data_loss": data, "relative": 100.0 * rise / (1.0 + data),
                      "rises": rises}
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
    "settings": {...}, "details": {...}}`` (``details["epsilon_sharpness"]["relative"]``: the
    rise relative to the data term, see the module docstring); the model is left as it was
    (parameters and mode).
    """
    names = list(param_names) if param_names is not None else perturbed_parameter_names(model)
    named = dict(model.named_parameters())
    missing = [n for n in names if n not in named]
    if missing:
        raise KeyError(f"parameters {missing[:5]} are not in the model")
    params = [named[n] for n in names]
    batches = as_batches(batches)

    def gen(stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(int(seed) * 1000 + stream)

    with eval_mode(model, loss_fn):
        closure = make_loss_closure(model, loss_fn, batches)
        eig, eig_info = top_hessian_eigenvalue(closure, params, power_iters, tol, gen(1), return_info=True)
        trace, trace_info = hessian_trace(closure, params, trace_samples, gen(2), return_info=True)
        sharp, sharp_info = epsilon_sharpness(closure, params, epsilon, steps=ascent_steps, generator=gen(3),
                                              constant=regulariser_constant(loss_fn, batches), return_info=True)
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
