"""Oracle methods (docs/methods.md, section 1b): reference points that read the corruption record,
information no real method has. They bound what a weighting or a masking could achieve on the same
data; they are not methods to compare on equal terms.

- ``class_oracle``: BCE (or any loss) with a per-class weight w_c proportional to 1 - r_c, r_c the
  class's true label-noise rate, normalised to mean 1 over classes (:func:`class_oracle_weights`):
  the best a class-wise weight of that shape can do.
- ``sample_oracle``: exactly the label entries the corruption changed are masked out (weight 0),
  every other entry keeps weight 1: the best any sample selection or masking can do.

Both only set a loss mask once per run (no batch transform), so they can be trained in vectorised
groups. Both always return a mask, also on clean data (all ones: the plain loss), so that the runs of a
group, which may differ in their corruption, all carry one. The run's corruption reaches them as
``corruption`` in :meth:`Method.from_config`'s context (:func:`~csu_lib.training.methods.build_method`
passes it to every method).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..config import MethodConfig
from ..core.errors import ConfigError
from .methods import Method, _changed_entries, register_method

#: The field of :class:`~csu_lib.corruption.CorruptionResult` the class oracle reads as r_c.
RATE_FIELD = "label_noise_rate"


def class_oracle_weights(rates: np.ndarray) -> np.ndarray:
    """(C,) float64 ``(1 - r_c) / mean(1 - r)``: weights proportional to each class's share of
    correct targets, with mean 1 over classes. A class whose targets are all wrong (r_c = 1) gets
    weight 0; when every class has r_c = 1 there is nothing to weight and this is an error."""
    keep = 1.0 - np.asarray(rates, dtype=np.float64)
    if keep.ndim != 1 or not np.all((keep >= -1e-12) & (keep <= 1 + 1e-12)):
        raise ConfigError(f"class_oracle: per-class noise rates must be a (C,) vector in [0, 1], got {rates!r}")
    if keep.mean() <= 0:
        raise ConfigError(f"class_oracle: every class has {RATE_FIELD} 1 (all its targets corrupted), so the weights "
                          "(1 - r_c) / mean(1 - r) are undefined; the class oracle needs at least one class "
                          "with a correct target")
    return keep / keep.mean()


class _Oracle(Method):
    """An oracle: reads the run's corruption record (None on clean data)."""

    @classmethod
    def from_config(cls, config: MethodConfig, **context) -> "_Oracle":
        return cls(context.get("corruption"))

    def __init__(self, corruption=None):
        self.corruption = corruption
        self._summary: dict[str, Any] = {}

    def _check_shape(self, labels: np.ndarray) -> None:
        if self.corruption is not None and np.shape(self.corruption.labels) != np.shape(labels):
            raise ConfigError(f"{type(self).__name__}: the corruption record covers labels of shape "
                              f"{np.shape(self.corruption.labels)}, the training labels have {np.shape(labels)}")

    def summary(self) -> dict:
        out: dict[str, Any] = {"oracle": True, **self._summary}
        changed = _changed_entries(self.corruption)
        if changed is None or not changed.any():
            out["note"] = "no label corrupted (clean data): every weight is 1, the run is the plain loss"
        return out


@register_method("class_oracle")
class ClassOracle(_Oracle):
    """Oracle: every element of class c weighted by w_c = (1 - r_c) / mean(1 - r), r_c the class's
    true ``label_noise_rate`` (:func:`class_oracle_weights`). The mask holds w_c in every row.

    Why ``label_noise_rate`` and not ``class_rate``: the weight multiplies class c's loss, so r_c
    must be the share of wrong targets that loss sees. ``label_noise_rate`` is exactly that: of the
    clips with a class-c positive (clean or corrupted), the share whose class-c target differs from
    the clean one; it counts the spurious c positives SAN adds and the c targets MAN moves in.
    ``class_rate`` counts how often c was the *source* of a corruption: under SAN the source keeps
    its correct label (the error lands on the added class, so ``class_rate`` would down-weight
    classes whose targets are right), under the audit design's SAN no clip has a source
    (``class_rate`` is 0 everywhere), and under MAN it misses the positives moved into c. On clean
    data every weight is 1."""

    def train_targets(self, labels):
        self._check_shape(labels)
        n_classes = np.shape(labels)[1]
        if self.corruption is None:
            rates = np.zeros(n_classes)
        else:
            rates = np.asarray(getattr(self.corruption, RATE_FIELD), dtype=np.float64)
        weights = class_oracle_weights(rates)
        if weights.shape != (n_classes,):
            raise ConfigError(f"class_oracle: {RATE_FIELD} has {weights.shape[0]} classes, the labels {n_classes}")
        self._summary = {"rate_field": RATE_FIELD, "rates": rates.tolist(), "weights": weights.tolist()}
        mask = np.broadcast_to(weights.astype(np.float32), np.shape(labels)).copy()
        return labels, mask


@register_method("sample_oracle")
class SampleOracle(_Oracle):
    """Oracle: the entries the corruption changed (|label - clean| > 1e-6) get weight 0, all others
    1. Under SAN the added positives are masked, under MAN the lost and the added one, under SLN
    the lowered positives, under missing the removed ones. On clean data nothing is masked."""

    def train_targets(self, labels):
        self._check_shape(labels)
        changed = _changed_entries(self.corruption)
        mask = np.ones(np.shape(labels), dtype=np.float32)
        if changed is not None:
            mask[changed] = 0.0
        self._summary = {"masked": int((mask == 0).sum()), "elements": int(mask.size)}
        return labels, mask

