"""STAC output of mosaics (and, later, publishing to a STAC API)."""
