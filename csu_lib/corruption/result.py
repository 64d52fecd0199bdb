"""What a corruption did to the labels of one split: :class:`CorruptionResult` (the arrays a
run record stores) and the true per-class rates computed from them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import CorruptionConfig

#: Integer code of each corruption kind in :attr:`CorruptionResult.kind_code`.
KIND_CODES = {"none": 0, "san": 1, "man": 2, "sln": 3, "missing": 4}


@dataclass
class CorruptionResult:
    """What an injector did to the labels of one split (all arrays have N = number of clips).

    - ``labels``: corrupted targets (N, C), float32; ``clean_labels``: the originals (N, C).
    - ``changed``: (N,) bool, clip corrupted; ``kind_code``: (N,) int8, :data:`KIND_CODES`.
    - ``source_class``: (N,) int, the true positive acted on (-1 where unchanged).
    - ``target_class``: (N,) int, the class added (SAN) or assigned (MAN); -1 otherwise.
    - ``class_rate``: (C,) fraction of clips with a clean positive of class c that were corrupted
      with c as the source class (what a profile controls).
    - ``label_noise_rate``: (C,) fraction of the clips with a positive of class c (clean or
      corrupted) whose class-c target differs from the clean one (what class c's loss sees;
      catches SAN/MAN targets).
    """

    config: CorruptionConfig
    labels: np.ndarray
    clean_labels: np.ndarray
    changed: np.ndarray
    kind_code: np.ndarray
    source_class: np.ndarray
    target_class: np.ndarray
    class_rate: np.ndarray
    label_noise_rate: np.ndarray

    ARRAYS = ("labels", "clean_labels", "changed", "kind_code", "source_class", "target_class",
              "class_rate", "label_noise_rate")

    @property
    def n_corrupted(self) -> int:
        return int(self.changed.sum())

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (:data:`ARRAYS`): what a run record stores of the corruption."""
        return {name: getattr(self, name) for name in self.ARRAYS}

    def meta(self) -> dict:
        """The JSON-able description stored next to the arrays (config and counts)."""
        return {"config": self.config.to_dict(), "n_corrupted": self.n_corrupted, "n_clips": int(len(self.changed))}

    @classmethod
    def from_stored(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "CorruptionResult":
        """The inverse of :meth:`meta` and :meth:`arrays` (the run record reads them back)."""
        return cls(config=CorruptionConfig.from_stored(meta["config"]), **{name: arrays[name] for name in cls.ARRAYS})


def rates_from_labels(clean: np.ndarray, labels: np.ndarray, changed: np.ndarray,
                      source_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``class_rate`` and ``label_noise_rate`` (see :class:`CorruptionResult`) from the arrays."""
    clean_pos = clean > 0.5
    n_pos = clean_pos.sum(axis=0)
    src_counts = np.bincount(source_class[changed & (source_class >= 0)], minlength=clean.shape[1])
    class_rate = np.divide(src_counts, n_pos, out=np.zeros(clean.shape[1]), where=n_pos > 0)
    touched = clean_pos | (labels > 0)
    differs = np.abs(labels - clean) > 1e-6
    n_touched = touched.sum(axis=0)
    label_noise_rate = np.divide((differs & touched).sum(axis=0), n_touched,
                                 out=np.zeros(clean.shape[1]), where=n_touched > 0)
    return class_rate.astype(np.float64), label_noise_rate.astype(np.float64)
