"""The short spellings users type: conditions (``san:0.5``, ``audit:san:0.5``,
``published:man:0.3``) method specs (``csu+mixup_or``) and loss spellings (``csu_stationary``), and the labels made from
them."""
from __future__ import annotations

from typing import Sequence

from ..core import registry
from ..core.errors import ConfigError
from .run import CORRUPTION_KINDS, LossConfig, RunConfig, check_audit_ratio


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


#: Loss spellings that name a variant of a registered loss, accepted wherever a loss is named (a
#: study grid's ``losses``, a method spec, ``csu train --loss``): spelling -> (loss name, LossConfig
#: fields). Plain ``"csu"`` is the paper's form (s learned by the optimiser); ``"csu_stationary"``
#: is our stationary fit of s (docs/methods.md, section 1), the same configuration as
#: ``LossConfig(name="csu", csu_fit="stationary")``, with the same run id.
LOSS_VARIANTS: dict[str, tuple[str, dict]] = {
    "csu_stationary": ("csu", {"csu_fit": "stationary"}),
    "csu2_stationary": ("csu2", {"csu_fit": "stationary"}),
}

#: How figures and tables name a loss spelling (:func:`loss_spec`); any other prints as spelled.
LOSS_LABELS = {"bce": "BCE", "csu": "CSU", "csu_stationary": "CSU (stationary)", "csu2": "two-sided CSU",
               "csu2_stationary": "two-sided CSU (stationary)"}


def _loss_names() -> list[str]:
    return [*registry.registry("loss"), *LOSS_VARIANTS]


def parse_loss_spec(text: str) -> tuple[str, dict]:
    """A loss spelling -> (registered loss name, LossConfig field overrides): ``"csu"`` ->
    ``("csu", {})``, ``"csu_stationary"`` -> ``("csu", {"csu_fit": "stationary"})``
    (:data:`LOSS_VARIANTS`); any other spelling is a loss name (which LossConfig checks)."""
    name, fields = LOSS_VARIANTS.get(str(text).strip(), (str(text).strip(), {}))
    return name, dict(fields)


def loss_spec(loss: LossConfig) -> str:
    """The spelling of a loss configuration, the inverse of :func:`parse_loss_spec`: ``csu``
    (the paper's form), ``csu_stationary``, ``bce`` ..."""
    for spelling, (name, fields) in LOSS_VARIANTS.items():
        if loss.name == name and all(getattr(loss, key) == value for key, value in fields.items()):
            return spelling
    return loss.name


def loss_label(loss) -> str:
    """How figures and tables name a loss (a :class:`LossConfig` or a spelling): ``CSU`` for the
    paper's form, ``CSU (stationary)`` for the stationary variant (:data:`LOSS_LABELS`)."""
    spec = loss_spec(loss) if isinstance(loss, LossConfig) else str(loss)
    return LOSS_LABELS.get(spec, spec)


def parse_method_spec(spec: str) -> tuple[str, str]:
    """``"bce"`` -> ("bce", "none"); ``"csu+mixup_or"`` -> ("csu", "mixup_or"); a bare method
    name (``"teacher_mask"``) means BCE with that method. The loss may be a variant spelling
    (``"csu_stationary+mixup_or"``: :func:`parse_loss_spec` turns it into its configuration)."""
    losses, methods = _loss_names(), registry.registry("method")
    text = str(spec).strip()
    loss, plus, method = text.partition("+")
    if not plus:
        loss, method = (text, "none") if text in losses else ("bce", text)
    if loss not in losses or method not in methods:
        raise ConfigError(f"method {spec!r}: write '<loss>' or '<loss>+<method>' with a loss in "
                          f"{losses} and a method in {list(methods)}")
    return loss, method


def method_spec(loss: str, method: str) -> str:
    """``bce``, ``csu+mixup_or``, ... (the loss, plus the method unless it is ``none``): the
    inverse of :func:`parse_method_spec`."""
    return loss if method in (None, "none") else f"{loss}+{method}"


def method_label(config: RunConfig) -> str:
    """The :func:`method_spec` of a run (its loss as :func:`loss_spec` spells it)."""
    return method_spec(loss_spec(config.loss), config.method.name)
