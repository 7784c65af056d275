"""EOPF products to cloud-optimised GeoZarr (``cloudfree convert``) and a GeoZarr validator."""

from cloudfree.convert.product import ConversionResult, convert

__all__ = ["ConversionResult", "convert"]
