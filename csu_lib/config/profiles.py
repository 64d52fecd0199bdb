"""Profiles: named sizes for a whole study (benchmark preset + training settings), beside the
benchmark and front-end presets of :mod:`.data`.

- ``smoke``: seconds per run; used by the test suite to execute every notebook.
- ``quick``: the CPU main job (``make figures``), sized for a 2-core machine.
- ``paper``: ESC-FreeGen50-sized benchmark (100 clips of 5 s per class), for a GPU.

:func:`csu_lib.study.run_config` turns a profile plus overrides into a :class:`RunConfig`. This
module imports nothing but the core, so ``csu figures --profile NAME`` checks the name at once.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import unknown_name


@dataclass(frozen=True)
class Profile:
    name: str
    benchmark: str
    epochs: int
    lr: float
    batch_size: int
    early_stopping_patience: int | None
    seeds: tuple[int, ...]
    #: Use each backbone's CPU-sized default width (``models.DEFAULT_WIDTH``) unless one is given.
    cpu_widths: bool = True
    #: The backbones the figure notebooks train by default (their ``models``/``model`` = None).
    backbones: tuple[str, ...] = ("small_cnn",)
    #: The corruption ratios of the degradation curves (the clean runs are ratio 0).
    ratios: tuple[float, ...] = (0.5,)
    #: ``TrainConfig.lr_schedule`` of the profile's runs.
    lr_schedule: str = "constant"
    #: ``TrainConfig.lr_decays``: learning-rate decays (x0.1) on a validation plateau before stopping.
    lr_decays: int = 0
    #: ``TrainConfig.bn_recalibration``: training clips whose batch statistics BatchNorm evaluates
    #: with (0: its running averages).
    bn_recalibration: int = 0
    #: The methods of the comparison figure (``<loss>`` or ``<loss>+<method>``) and the
    #: teacher-masking percentages of its sweep (0 % is the plain BCE run).
    methods: tuple[str, ...] = ("bce", "bce+teacher_mask", "bce+label_correction", "bce+psl", "bce+mixup_or", "csu")
    mask_percents: tuple[float, ...] = (5.0, 10.0)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", "smoke", epochs=2, lr=3e-3, batch_size=32, early_stopping_patience=None, seeds=(0,)),
    # a budget schedule (docs/speed.md): 24 epochs, 5% warm-up then cosine to 0 at Adam 3e-3, no
    # early stopping, validation-selected weights, BatchNorm recalibrated on 256 training clips before
    # every evaluation; 3 seeds, one ratio, four methods and one masking percentage
    "quick": Profile("quick", "quick", epochs=24, lr=3e-3, batch_size=32, early_stopping_patience=None,
                     lr_schedule="cosine", bn_recalibration=256,
                     seeds=(0, 1, 2), backbones=("pooled_cnn",), ratios=(0.5,),
                     methods=("bce", "bce+teacher_mask", "bce+label_correction", "csu"), mask_percents=(5.0,)),
    "paper": Profile("paper", "paper", epochs=60, lr=1e-3, batch_size=32, early_stopping_patience=15,
                     seeds=tuple(range(10)), cpu_widths=False, backbones=("mobilenetv2", "cnn14"),
                     ratios=(0.1, 0.2, 0.3, 0.4, 0.5),
                     # the in-sample teacher of Fonseca et al. beside an out-of-fold one (5 fold teachers)
                     methods=("bce", "bce+teacher_mask", "bce+teacher_mask@oof5", "bce+label_correction", "bce+psl",
                              "bce+mixup_or", "csu")),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise unknown_name("profile", name, PROFILES)
    return PROFILES[name]
