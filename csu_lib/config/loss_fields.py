"""The loss-specific fields of :class:`~csu_lib.config.LossConfig`: which loss reads which (a
run id leaves out the fields its loss does not read: :func:`unread_fields`), the default
bootstrap weight of each kind (:data:`BOOTSTRAP_BETA`), and the checks of the sample-wise robust
losses' fields (:func:`check_robust_loss_fields`; docs/methods.md, section 1b)."""
from __future__ import annotations

import math
from typing import Any, Callable

from .base import _check, _is_number

#: The weight b of the label in bootstrapping's target when ``LossConfig.bootstrap_beta`` is None
#: (Reed et al. 2015): 0.95 with the soft prediction, 0.8 with the thresholded one.
BOOTSTRAP_BETA = {"soft": 0.95, "hard": 0.8}

#: The losses that read each loss-specific field of LossConfig.
LOSS_FIELD_READERS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("csu_init", "csu_clamp", "csu_lr", "csu_scale", "csu_class_reduction", "csu_fit"),
                    ("csu", "csu2")),
    "gce_q": ("gce",),
    **dict.fromkeys(("sce_alpha", "sce_beta", "sce_log_zero"), ("sce",)),
    **dict.fromkeys(("bootstrap_kind", "bootstrap_beta", "bootstrap_detach"), ("bootstrap",)),
    **dict.fromkeys(("asl_gamma_pos", "asl_gamma_neg", "asl_margin"), ("asl", "apl")),
    **dict.fromkeys(("apl_eps1", "apl_eps2", "apl_eps1_neg"), ("apl",)),
}

#: The csu_* fields that BCE run ids were first stored with: they stay in the hash of a BCE run.
IN_BCE_IDS = frozenset({"csu_init", "csu_clamp", "csu_lr", "csu_scale", "csu_class_reduction"})


def unread_fields(loss: str) -> set[str]:
    """The loss-specific fields that ``loss`` does not read, which its run id leaves out (for
    ``bce`` all but :data:`IN_BCE_IDS`), so that the options of one loss never move the ids of
    another."""
    return {name for name, readers in LOSS_FIELD_READERS.items()
            if loss not in readers and not (loss == "bce" and name in IN_BCE_IDS)}


def _number(config: Any, name: str, ok: Callable[[float], bool], msg: str) -> None:
    value = getattr(config, name)
    _check(_is_number(value) and math.isfinite(value) and ok(value), f"loss.{name}", msg, value)


def check_robust_loss_fields(config: Any) -> None:
    """Raise :class:`~csu_lib.core.errors.ConfigError`, naming the field, for a bad value of a
    GCE, SCE, bootstrapping, ASL or APL field of the LossConfig ``config``."""
    _number(config, "gce_q", lambda q: 0 < q <= 1, "must lie in (0, 1]")
    for name in ("sce_alpha", "sce_beta", "asl_gamma_pos", "asl_gamma_neg"):
        _number(config, name, lambda v: v >= 0, "must be a number >= 0")
    _check(config.sce_alpha + config.sce_beta > 0, "loss.sce_alpha", "and loss.sce_beta cannot both be 0",
           (config.sce_alpha, config.sce_beta))
    _number(config, "sce_log_zero", lambda a: a < 0, "(the value log 0 is clipped to) must be negative")
    _check(config.bootstrap_kind in BOOTSTRAP_BETA, "loss.bootstrap_kind", "must be 'soft' or 'hard'",
           config.bootstrap_kind)
    if config.bootstrap_beta is not None:
        _number(config, "bootstrap_beta", lambda b: 0 <= b <= 1,
                "must lie in [0, 1], or be None (0.95 for soft, 0.8 for hard bootstrapping)")
    _check(isinstance(config.bootstrap_detach, bool), "loss.bootstrap_detach", "must be true or false",
           config.bootstrap_detach)
    _number(config, "asl_margin", lambda m: 0 <= m < 1, "must lie in [0, 1)")
    for name in ("apl_eps1", "apl_eps2", "apl_eps1_neg"):
        _number(config, name, lambda v: True, "must be a finite number")
