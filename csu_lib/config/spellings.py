"""The short spellings users type: conditions (``san:0.5``, ``audit:san:0.5``,
``published:man:0.3``) and method specs (``csu+mixup_or``), and the labels made from them."""
from __future__ import annotations

from typing import Sequence

from ..core import registry
from ..core.errors import ConfigError
from .run import CORRUPTION_KINDS, RunConfig, check_audit_ratio


def parse_condition(text: str) -> dict:
    """``"none"``, ``"san:0.5"``, ``"man:0.3"`` ... -> corruption overrides ``{kind, ratio}``
    (a bare kind means ratio 0.5); ``"published:man:0.3"``: ESC-FreeGen50's published noisy
    label files of that kind and ratio (``{kind, ratio, published: True}``); ``"audit:san:0.5"``:
    the class-dependent audit design (:mod:`csu_lib.corruption.audit_design`) of that kind with
    top within-class level ``ratio`` in (0, 0.5] (``{kind, ratio, profile: "audit"}``)."""
    text = str(text)
    prefix, _, body = text.partition(":")
    if prefix not in ("published", "audit"):
        return _kind_and_ratio(text, text)
    out = _kind_and_ratio(body, text)
    if prefix == "published":
        if out["kind"] == "none":
            raise ConfigError(f"condition {text!r}: published noise needs a kind and a ratio, e.g. 'published:man:0.3'")
        return {**out, "published": True}
    if out["kind"] == "none":
        raise ConfigError(f"condition {text!r}: the audit design needs a kind and a ratio, e.g. 'audit:san:0.5'")
    check_audit_ratio(out["ratio"], f"condition {text!r}: the audit ratio")
    return {**out, "profile": "audit"}


def audit_conditions(kinds: Sequence[str], ratio: float) -> list[str]:
    """``["audit:<kind>:<ratio>", ...]``: the audit design's condition of every kind (the
    spelling :func:`parse_condition` reads)."""
    return [f"audit:{k}:{ratio}" for k in kinds]


def _kind_and_ratio(body: str, text: str) -> dict:
    """``"san:0.5"`` -> ``{kind, ratio}`` (``text``: the whole condition, for the messages)."""
    kind, _, ratio = body.partition(":")
    if kind not in CORRUPTION_KINDS:
        raise ConfigError(f"condition {text!r}: unknown corruption type {kind!r}; "
                          f"use one of {', '.join(CORRUPTION_KINDS)} (optionally ':ratio')")
    if kind == "none":
        return {"kind": "none", "ratio": 0.0}
    try:
        r = float(ratio) if ratio else 0.5
    except ValueError:
        raise ConfigError(f"condition {text!r}: ratio {ratio!r} is not a number") from None
    if not 0.0 <= r <= 1.0:
        raise ConfigError(f"condition {text!r}: ratio {r} is outside [0, 1]")
    return {"kind": kind, "ratio": r}


def parse_method_spec(spec: str) -> tuple[str, str]:
    """``"bce"`` -> ("bce", "none"); ``"csu+mixup_or"`` -> ("csu", "mixup_or"); a bare method
    name (``"teacher_mask"``) means BCE with that method."""
    losses, methods = registry.registry("loss"), registry.registry("method")
    text = str(spec).strip()
    loss, plus, method = text.partition("+")
    if not plus:
        loss, method = (text, "none") if text in losses else ("bce", text)
    if loss not in losses or method not in methods:
        raise ConfigError(f"method {spec!r}: write '<loss>' or '<loss>+<method>' with a loss in "
                          f"{list(losses)} and a method in {list(methods)}")
    return loss, method


def method_spec(loss: str, method: str) -> str:
    """``bce``, ``csu+mixup_or``, ... (the loss, plus the method unless it is ``none``): the
    inverse of :func:`parse_method_spec`."""
    return loss if method in (None, "none") else f"{loss}+{method}"


def method_label(config: RunConfig) -> str:
    """The :func:`method_spec` of a run."""
    return method_spec(config.loss.name, config.method.name)
