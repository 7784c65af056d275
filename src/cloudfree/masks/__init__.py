"""Cloud masks, behind one registry (:func:`make_mask`); plug-ins by entry point or import path."""

from cloudfree.masks.base import (
    ENTRY_POINT_GROUP,
    CloudMask,
    NoMask,
    make_mask,
    mask_names,
    mask_options,
    register_mask,
)
from cloudfree.masks.probability import ProbabilityMask
from cloudfree.masks.s2cloudless import S2CloudlessMask
from cloudfree.masks.scl import (
    CDSE_L3_VALID,
    DEFAULT_VALID,
    STRICT_VALID,
    SclMask,
    parse_classes,
)
from cloudfree.options import load_mask_config, merged_options, parse_option_pairs

__all__ = [
    "CDSE_L3_VALID",
    "DEFAULT_VALID",
    "ENTRY_POINT_GROUP",
    "STRICT_VALID",
    "CloudMask",
    "NoMask",
    "ProbabilityMask",
    "S2CloudlessMask",
    "SclMask",
    "load_mask_config",
    "make_mask",
    "mask_names",
    "mask_options",
    "merged_options",
    "parse_classes",
    "parse_option_pairs",
    "register_mask",
]
