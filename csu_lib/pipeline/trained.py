"""A trained run's network and loss, rebuilt from its record for the probes that evaluate it (the
teacher scores, the score plane, the landscape probes): the one place that turns the stored
weights and loss state of a :class:`~csu_lib.records.RunRecord` back into modules."""
from __future__ import annotations

import torch

from ..core.errors import ConfigError
from ..losses import build_loss, restore_loss_state
from ..models import build_model
from ..records import RunRecord


def load_trained(record: RunRecord, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, torch.nn.Module]:
    """(model, loss) of the record's selected weights (``model.pt``), the model in eval mode,
    both on ``device``. The loss holds the learned s of the selected model
    (:attr:`RunRecord.final_log_sigma2`; records written before it was stored once: the s kept
    in the loss state) for CSU, nothing for BCE."""
    n_classes = len(record.class_names)
    model = build_model(record.config.model, n_classes, record.config.frontend.n_mels)
    try:
        model.load_state_dict(record.weights)
    except RuntimeError as exc:
        raise ConfigError(f"{record.path}: its weights do not fit a {record.config.model.name} with {n_classes} "
                          f"classes ({str(exc).splitlines()[0]})") from None
    loss_fn = build_loss(record.config.loss, n_classes)
    restore_loss_state(loss_fn, record.loss_state, record.final_log_sigma2)
    return model.to(device).eval(), loss_fn.to(device)
