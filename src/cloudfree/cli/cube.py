"""``cloudfree cube``: an analysis-ready Zarr v3 data cube, one time layer per solar day."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from cloudfree.cli.options import (
    bands_option,
    cloud_mask_options,
    grid_options,
    reading_options,
    run_options,
    source_options,
)
from cloudfree.options import parse_option_pairs


def _handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """main.py's error handling, looked up when the command runs.

    Importing ``cloudfree.cli.main`` here at import time would be circular when it runs as
    ``python -m cloudfree.cli.main`` (it registers this command at its end).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cloudfree.cli import main

        return main._handle_errors(func)(*args, **kwargs)

    return wrapper


@click.command()
@source_options
@bands_option("store")
@grid_options
@click.option(
    "--time-chunk",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Solar days per Zarr chunk.",
)
@click.option(
    "--time-shard",
    type=click.IntRange(min=1),
    default=None,
    help="Solar days per shard and per work unit, a multiple of --time-chunk (default: "
    "--time-chunk, no sharding).",
)
@click.option(
    "--margin",
    "margin_m",
    type=click.FloatRange(0, 100_000),
    default=0.0,
    show_default=True,
    help="Metres stored around the area, so `mosaic --from-cube` with a mask clean-up or "
    "best-pixel sees the same context at the edges as a mosaic from the scenes.",
)
@cloud_mask_options
@click.option(
    "--validity",
    is_flag=True,
    help="Also store `valid`: the cloud mask's verdict per observation (1 clear, 0 rejected, "
    "255 no data), clean-up included.",
)
@reading_options
@click.option("--out", required=True, help="Zarr store path or URL of the cube.")
@click.option(
    "--initialize/--no-initialize",
    default=None,
    help="--initialize only creates the empty store (its shape is known from the search); "
    "--no-initialize fills an existing one. Default: both.",
)
@run_options
@click.pass_context
@_handle_errors
def cube(
    ctx: click.Context, mask_option_pairs: tuple[str, ...], dry_run: bool, **options: Any
) -> None:
    """Write every solar day of a search on the target grid into a Zarr v3 cube."""
    from cloudfree.budget import check_memory, format_plan
    from cloudfree.cli.main import _progress
    from cloudfree.cube import build_cube_request, dry_run_cube, run_cube

    options["mask_options"] = parse_option_pairs(mask_option_pairs)
    request = build_cube_request(**options)
    if dry_run:
        summary = dry_run_cube(request)
        click.echo(format_plan(summary))
        check_memory(summary)
        return
    with _progress(not ctx.obj["quiet"] and request.fill, "filling cube") as progress:
        result = run_cube(
            request, progress=progress, notify=lambda text: click.echo(text, err=True)
        )
    if not ctx.obj["quiet"]:
        click.echo(
            f"Cube {result.out}: shape {result.shape} (time, y, x) in {result.crs}, variables "
            f"{', '.join(result.variables)}, {len(result.days)} solar days from "
            f"{result.scenes} scenes in {result.units} work units."
        )
        if result.remaining:
            click.echo(f"{result.remaining} work unit(s) to fill; rerun with --resume.")
