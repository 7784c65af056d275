"""Cloud masks, behind one registry (:func:`make_mask`)."""

from cloudfree.masks.base import CloudMask, NoMask, make_mask, mask_names, register_mask
from cloudfree.masks.scl import CDSE_L3_VALID, DEFAULT_VALID, SclMask, parse_classes

__all__ = [
    "CDSE_L3_VALID",
    "DEFAULT_VALID",
    "CloudMask",
    "NoMask",
    "SclMask",
    "make_mask",
    "mask_names",
    "parse_classes",
    "register_mask",
]
