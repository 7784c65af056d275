"""PNG quick-looks: true colour when red, green and blue were composited, else one band."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from cloudfree.bands import canonical_band
from cloudfree.stack import ENCODINGS, Output, ValueEncoding
from cloudfree.store.zarr_store import MosaicStore

#: Reflectance mapped to white; 0.3 shows vegetation and soil without saturating most land.
QUICKLOOK_MAX_REFLECTANCE = 0.3
QUICKLOOK_MAX_SIZE = 1024


def quicklook_png(
    store: MosaicStore,
    band_names: Sequence[str],
    period_index: int,
    shape: tuple[int, int],
    encoding: ValueEncoding = ENCODINGS[Output.REFLECTANCE],
) -> bytes:
    """An RGBA PNG of one period, at most :data:`QUICKLOOK_MAX_SIZE` pixels on its long side.

    Pixels without data are transparent. Counts are shown grey, white at the period's largest.
    """
    by_id = {canonical_band(n).id: n for n in band_names}
    rgb = [by_id.get("B04"), by_id.get("B03"), by_id.get("B02")]
    names = [n for n in rgb if n is not None]
    chosen = names if len(names) == 3 else [band_names[0]]
    step = max(1, -(-max(shape) // QUICKLOOK_MAX_SIZE))
    ys, xs = slice(0, shape[0], step), slice(0, shape[1], step)
    layers = [store.read_period(n, period_index, ys, xs) for n in chosen]
    if encoding.nodata is None:
        missing = np.zeros(layers[0].shape, dtype=bool)
        white = max(1.0, float(max(layer.max(initial=0) for layer in layers)))
    else:
        missing = np.any([layer == encoding.nodata for layer in layers], axis=0)
        white = QUICKLOOK_MAX_REFLECTANCE / encoding.scale
    scaled = [np.clip(layer * (255 / white), 0, 255).astype(np.uint8) for layer in layers]
    if len(scaled) == 1:
        scaled = scaled * 3
    alpha = np.where(missing, 0, 255).astype(np.uint8)
    image = Image.fromarray(np.dstack([*scaled, alpha]), mode="RGBA")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
