"""Outputs: the Zarr v3 / GeoZarr mosaic store, COGs and quick-looks."""
