"""The log-mel front-end (csu_lib.features.frontend): the ``top_db`` floor (preset ``psl16k``) is
taken per clip, not against the maximum of the whole feature-building block, so a clip's features
do not depend on the other clips.
"""
from __future__ import annotations

import pytest
import torch

from csu_lib.config import frontend_preset
from csu_lib.features import LogMel


# --------------------------------------------------------------------------------------------
# 2. the top_db floor per clip


def test_top_db_floor_is_per_clip():
    fe = frontend_preset("psl16k")
    assert fe.top_db is not None
    logmel = LogMel(fe)
    g = torch.Generator().manual_seed(0)
    n = fe.sample_rate
    quiet = torch.randn(n, generator=g)
    quiet[n // 2:] = 0.0  # a silent half: the clip's own top_db floor bites
    loud = torch.randn(n, generator=g) * 1e4  # ~80 dB louder
    with torch.no_grad():
        alone = logmel(quiet[None])[0]
        block = logmel(torch.stack([quiet, loud]))
        loud_alone = logmel(loud[None])[0]
    assert float(alone.min()) == pytest.approx(float(alone.max()) - fe.top_db, abs=1e-3)
    diff = float((block[0] - alone).abs().max())
    assert torch.allclose(block[0], alone, atol=1e-5), \
        f"the quiet clip's features change by up to {diff:.3f} dB when built with a louder clip"
    assert torch.allclose(block[1], loud_alone, atol=1e-5)
