"""``cloudfree convert`` (EOPF product to GeoZarr) and ``cloudfree validate`` (GeoZarr check)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import click

from cloudfree.errors import GeoZarrInvalidError


def _handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """The shared error-to-exit-code handling of ``cli.main`` (imported late: main imports us)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cloudfree.cli.main import _handle_errors as handle

        return handle(func)(*args, **kwargs)

    return wrapper


def _store_options(url: str) -> dict[str, Any] | None:
    """Fsspec options for an ``s3://`` URL from the configured AWS-style store, else none."""
    if urlsplit(url).scheme != "s3":
        return None
    from cloudfree.sources.providers import store

    return store("aws").resolve().fsspec_options()


def _split_bands(values: tuple[str, ...]) -> list[str] | None:
    names = [n.strip().lower() for v in values for n in v.split(",") if n.strip()]
    return names or None


@click.command("convert")
@click.argument("item")
@click.option("--out", required=True, help="Output GeoZarr store: a local path or s3:// URL.")
@click.option(
    "--catalog-dir",
    default=None,
    help="STAC collection folder for the output item (default: <out stem>.stac).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing store and catalog.")
@click.option(
    "--bands",
    multiple=True,
    help="Only these arrays, e.g. --bands b02,b03,b04,scl (default: all).",
)
@click.option(
    "--shards/--no-shards",
    default=True,
    show_default=True,
    help="Shard 512 px chunks into 2048 px shards; --no-shards for readers without the "
    "sharding codec (GDAL before its Zarr v3 codec update).",
)
@_handle_errors
def convert(
    item: str,
    out: str,
    catalog_dir: str | None,
    overwrite: bool,
    bands: tuple[str, ...],
    shards: bool,
) -> None:
    """Convert the EOPF product of a STAC ITEM (URL or file) to cloud-optimised GeoZarr.

    The Zarr location is read from the item's assets. Writes the store and a STAC collection
    with one item (projection, bands, thumbnail) that ``cloudfree publish`` can register.
    """
    from cloudfree.convert import convert as run_convert
    from cloudfree.convert.eopf_item import load_item, resolve_source
    from cloudfree.convert.geozarr_writer import SHARD

    source = resolve_source(load_item(item))
    result = run_convert(
        item,
        out,
        catalog_dir=catalog_dir,
        overwrite=overwrite,
        bands=_split_bands(bands),
        storage_options=_store_options(out),
        source_options=_store_options(source.product_href),
        shard=SHARD if shards else None,
    )
    for group in result.groups:
        levels = ", ".join(
            f"{lv.name} {lv.geobox.shape.y}x{lv.geobox.shape.x}" for lv in group.levels
        )
        click.echo(f"{group.path}: {len(group.bands)} arrays; levels {levels}")
    click.echo(f"GeoZarr store: {result.store_url}")
    click.echo(f"STAC collection: {result.catalog_href}")


@click.command("validate")
@click.argument("store")
@_handle_errors
def validate(store: str) -> None:
    """Check that STORE follows the GeoZarr conventions (proj:, spatial:, multiscales).

    Exits 0 when valid; otherwise lists every reason and exits with the 'invalid GeoZarr' code.
    """
    from cloudfree.convert.validate import validate_geozarr

    findings = validate_geozarr(store, _store_options(store))
    if findings:
        reasons = "\n".join(f"  - {f}" for f in findings)
        raise GeoZarrInvalidError(f"{store} is not valid GeoZarr:\n{reasons}")
    click.echo(f"{store}: valid GeoZarr")
