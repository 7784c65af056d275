"""The session's synthetic archive as Copernicus Data Space serves it, for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pystac


def cdse_items(archive: Any, s3_server: Any, tmp_path: Path) -> Path:
    """The archive's items with their assets on ``s3://eodata/`` of ``s3_server``, as a file."""
    s3_server.create_bucket("eodata")
    s3_server.upload_directory(archive.root / "sentinel-2-l2a", "eodata", prefix="Sentinel-2")
    features = []
    for item in pystac.read_file(str(archive.catalog)).get_items(recursive=True):
        item.make_asset_hrefs_absolute()
        for asset in item.assets.values():
            relative = Path(asset.href).relative_to(archive.root / "sentinel-2-l2a").as_posix()
            asset.href = f"s3://eodata/Sentinel-2/{relative}"
        features.append(item.to_dict(include_self_link=False, transform_hrefs=False))
    path = tmp_path / "cdse-items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path
