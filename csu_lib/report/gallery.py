"""The gallery of the docs: a few reference PNGs of ``make figures`` copied into ``docs/gallery/``,
each scaled down until it is below a size limit (300 kB by default), so the repository shows
what the suite produces without carrying full-resolution build outputs.

``make gallery`` (``csu gallery``) regenerates them from ``figures/``; docs/results.md shows them next
to their readings (:data:`csu_lib.report.catalog.CATALOG`).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

from ..core.errors import CsuError
from ..core.io import atomic_write_bytes

#: The figures of the gallery, in the order of docs/results.md.
GALLERY: tuple[str, ...] = ("degradation", "sigma_trajectory", "sigma_vs_truth", "class_noise_audit", "score_plane",
                            "landscape_2d", "method_comparison", "class_precision")
MAX_BYTES = 300_000


def write_gallery(fig_dir: str | os.PathLike, out_dir: str | os.PathLike, names: Sequence[str] = GALLERY, *,
                  max_bytes: int = MAX_BYTES, max_width: int = 1400) -> list[Path]:
    """Write ``<out_dir>/<name>.png`` for every figure of ``names`` found in ``fig_dir``, no wider
    than ``max_width`` pixels and smaller than ``max_bytes``; returns the paths. Every figure
    missing from ``fig_dir`` is named in one error before anything is written."""
    fig_dir, out_dir = Path(fig_dir), Path(out_dir)
    missing = [n for n in names if not (fig_dir / f"{n}.png").is_file()]
    if missing:
        raise CsuError(f"{fig_dir} has no {', '.join(m + '.png' for m in missing)}: run `make figures` first "
                       "(the gallery is made from its quick-profile figures)")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        data = shrink_png((fig_dir / f"{name}.png").read_bytes(), max_bytes=max_bytes, max_width=max_width)
        path = out_dir / f"{name}.png"
        atomic_write_bytes(path, data)
        paths.append(path)
    return paths


def shrink_png(data: bytes, *, max_bytes: int = MAX_BYTES, max_width: int = 1400) -> bytes:
    """The PNG ``data`` scaled to at most ``max_width`` pixels wide and reduced to a 256-colour
    palette, then scaled down by 15% steps until it is below ``max_bytes``."""
    from PIL import Image  # optional: Pillow comes with matplotlib (the notebooks extra)

    image = Image.open(io.BytesIO(data)).convert("RGB")
    width = min(image.width, max_width)
    while True:
        height = max(1, round(image.height * width / image.width))
        scaled = image.resize((width, height), Image.LANCZOS) if width != image.width else image
        buf = io.BytesIO()
        scaled.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
        if buf.tell() < max_bytes or width <= 200:
            return buf.getvalue()
        width = int(width * 0.85)
