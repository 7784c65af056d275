"""A deterministic synthetic Sentinel-2 L2A archive with a known cloud-free truth.

:func:`make_archive` writes two overlapping tiles near Dublin (straddling the UTM zone 29/30
boundary) over a winter time series, as COGs with a self-contained STAC 1.1 catalog, plus the
truth surface reflectance. :meth:`SyntheticArchive.truth` evaluates that truth exactly on any
grid, so composites can be scored against it.
"""

from cloudfree.testing.archive import make_archive
from cloudfree.testing.model import SyntheticArchive, SyntheticScene, SyntheticTile

__all__ = ["SyntheticArchive", "SyntheticScene", "SyntheticTile", "make_archive"]
