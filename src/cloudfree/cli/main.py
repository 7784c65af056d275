"""``cloudfree`` commands: mosaic, search, demo."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from cloudfree import __version__
from cloudfree.access import redact_message
from cloudfree.bands import BANDS
from cloudfree.cli.exit_codes import exit_code_for
from cloudfree.cli.options import (
    PERIOD,
    bands_option,
    cloud_mask_options,
    grid_options,
    reading_options,
    run_options,
    source_options,
)
from cloudfree.composite import compositor_factory, compositor_names, compositor_options
from cloudfree.errors import CloudfreeError
from cloudfree.masks import mask_names, mask_options
from cloudfree.options import parse_option_pairs
from cloudfree.scene import Scene

log = logging.getLogger("cloudfree")


def _handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn cloudfree errors into a message on stderr and the exit code from the table."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CloudfreeError as exc:
            code, label = exit_code_for(exc)
            click.echo(f"Error ({label}): {exc}", err=True)
            if exc.__cause__ is not None and log.isEnabledFor(logging.DEBUG):
                log.debug("cause", exc_info=exc.__cause__)
            sys.exit(code)

    return wrapper


def _redact_record(record: logging.LogRecord) -> bool:
    """Strip signatures and tokens from every URL in a log line, whichever library logs it."""
    message = record.getMessage()
    clean = redact_message(message)
    if clean != message:
        record.msg, record.args = clean, None
    return True


@contextmanager
def _progress(enabled: bool, description: str) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@click.group()
@click.version_option(__version__, prog_name="cloudfree")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bar.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Cloud-free Sentinel-2 mosaics and analysis-ready data cubes."""
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)
    logging.getLogger("cloudfree").setLevel(level)
    ctx.obj = {"quiet": quiet}


@cli.command()
@source_options
@bands_option("composite")
@grid_options
@cloud_mask_options
@click.option(
    "--min-clear-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Drop a day from a tile when less than this fraction of its data there is clear.",
)
@click.option(
    "--method",
    default=None,
    metavar="NAME",
    help=f"Compositing method: {', '.join(compositor_names())}, or a plug-in as module:Class "
    "(default median; `cloudfree methods` lists options).",
)
@click.option(
    "--quantile", type=click.FloatRange(0, 1), default=None, help="Q for --method quantile."
)
@click.option(
    "--method-option",
    "method_option_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A method option (repeatable), e.g. doy_target=196 for best-pixel.",
)
@click.option(
    "--provenance",
    is_flag=True,
    help="Also write the method's provenance layers (chosen date; score for best-pixel).",
)
@click.option(
    "--preset", type=click.Choice(["cdse-l3"]), default=None, help="A published product definition."
)
@click.option(
    "--period", type=PERIOD, default=None, help="all, month, quarter or <N>months (default all)."
)
@click.option("--out", required=True, help="Zarr store path or URL to write.")
@click.option(
    "--from-cube",
    default=None,
    metavar="STORE",
    help="Composite a cube made by `cloudfree cube` instead of searching scenes (on its grid "
    "and area; no --stac/--bbox/--crs/--resolution).",
)
@click.option("--cog", "cog_dir", default=None, help="Folder for one multi-band COG per period.")
@click.option(
    "--cog-compression",
    type=click.Choice(["deflate", "zstd"]),
    default="deflate",
    show_default=True,
    help="The COGs' codec: deflate is read by every TIFF reader; zstd writes about 3x faster "
    "and reads faster, 8% larger, read by GDAL 2.3+ (QGIS, rasterio, titiler) and geotiff.js.",
)
@click.option(
    "--catalog",
    "catalog_dir",
    default=None,
    help="Folder for the STAC collection (default: <out>.stac).",
)
@click.option("--no-quicklook", is_flag=True, help="Skip the PNG quick-looks.")
@reading_options
@run_options
@click.pass_context
@_handle_errors
def mosaic(
    ctx: click.Context,
    mask_option_pairs: tuple[str, ...],
    method_option_pairs: tuple[str, ...],
    no_quicklook: bool,
    dry_run: bool,
    **options: Any,
) -> None:
    """Make a cloud-free composite per period and write Zarr, COGs, quick-looks and STAC."""
    from cloudfree.pipeline import build_request, run

    options["mask_options"] = parse_option_pairs(mask_option_pairs)
    options["method_options"] = parse_option_pairs(
        method_option_pairs, flag="--method-option", example="quantile=0.1"
    )
    request = build_request(quicklook=not no_quicklook, **options)
    if dry_run:
        _dry_run(request)
        return
    with _progress(not ctx.obj["quiet"], "compositing tiles") as progress:
        result = run(request, progress=progress, notify=lambda text: click.echo(text, err=True))
    if not ctx.obj["quiet"]:
        click.echo(
            f"Wrote {result.out}: {len(result.periods)} period(s), shape {result.shape} in "
            f"{result.crs}, from {len(result.scenes)} scenes in {result.units} work units."
        )
        if result.remaining:
            click.echo(
                f"{result.remaining} work unit(s) remain; rerun with --resume to finish "
                "(COGs and STAC are written when every unit is done)."
            )
        for cog in result.cogs:
            click.echo(f"COG {cog}")
        if result.catalog:
            click.echo(f"STAC {result.catalog}")


def _dry_run(request: Any) -> None:
    """Print the plan, then refuse (exit 2) if it does not fit the memory limit."""
    from cloudfree.budget import check_memory, format_plan
    from cloudfree.pipeline import dry_run

    summary = dry_run(request)
    click.echo(format_plan(summary))
    check_memory(summary)


def search_summaries(scenes: list[Scene]) -> list[dict[str, object]]:
    """JSON-ready scenes; ``same_day`` lists the other scenes of the tile and solar day."""
    groups: dict[tuple[object, object], list[str]] = {}
    for scene in scenes:
        groups.setdefault((scene.solar_day, scene.tile), []).append(scene.id)
    rows = []
    for scene in scenes:
        row = scene.summary()
        row["same_day"] = [i for i in groups[(scene.solar_day, scene.tile)] if i != scene.id]
        rows.append(row)
    return rows


@cli.command()
@source_options
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@_handle_errors
def search(fmt: str, **options: Any) -> None:
    """List the scenes a mosaic with these options would use."""
    from cloudfree.pipeline import find_scenes

    scenes = sorted(find_scenes(**options), key=lambda s: (s.solar_day, s.tile or "", s.datetime))
    if fmt == "json":
        click.echo(json.dumps(search_summaries(scenes), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("solar day", "id", "crs", "cloud %", "baseline", "offset")
    previous = None
    for scene in scenes:
        solar_day = scene.solar_day.isoformat()
        day = solar_day if solar_day != previous else "  〃"
        previous = solar_day
        offsets = sorted(
            {f"{b.offset:g}" for k, b in scene.bands.items() if BANDS[k].is_reflectance}
        )
        table.add_row(
            day,
            scene.id,
            scene.crs or "?",
            "?" if scene.cloud_cover is None else f"{scene.cloud_cover:.1f}",
            scene.processing_baseline or "?",
            ",".join(offsets),
        )
    console = Console()
    if not console.is_terminal:
        console.width = 250  # piped or redirected: never crop scene ids
    console.print(table)


def _list_options(options: dict[str, object]) -> None:
    import inspect

    for option, default in options.items():
        shown = "required" if default is inspect.Parameter.empty else f"default {default!r}"
        if isinstance(default, frozenset):
            shown = "default " + ",".join(
                sorted(str(getattr(c, "name", c)).lower() for c in default)
            )
        click.echo(f"  {option}  ({shown})")


@cli.command()
def masks() -> None:
    """List the cloud masks and their options (for --cloud-mask and --mask-option)."""
    for name in mask_names():
        click.echo(name)
        _list_options(mask_options(name))


@cli.command()
def methods() -> None:
    """List the compositing methods, their options and provenance (for --method)."""
    for name in compositor_names():
        factory = compositor_factory(name)
        summary = (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""
        provenance = getattr(factory, "provenance", ())
        extra = f"  [provenance: {', '.join(provenance)}]" if provenance else ""
        click.echo(f"{name}: {summary}{extra}")
        _list_options(compositor_options(name))


@cli.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False),
    default="demo-output",
    show_default=True,
    help="Where the synthetic archive and the mosaic go.",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--tile-size", type=click.IntRange(128, 4096), default=512, show_default=True)
@click.pass_context
@_handle_errors
def demo(ctx: click.Context, workdir: str, seed: int, tile_size: int) -> None:
    """Generate the synthetic archive, mosaic it monthly, and report the error against the truth."""
    from cloudfree.demo import run_demo

    with _progress(not ctx.obj["quiet"], "compositing tiles") as progress:
        report = run_demo(Path(workdir), seed=seed, tile_size=tile_size, progress=progress)
    click.echo(report)


# Commands in their own modules, registered once the group exists.
from cloudfree.cli.convert import convert, validate  # noqa: E402
from cloudfree.cli.cube import cube  # noqa: E402
from cloudfree.cli.publish import publish  # noqa: E402

cli.add_command(convert)
cli.add_command(cube)
cli.add_command(validate)
cli.add_command(publish)

if __name__ == "__main__":  # pragma: no cover
    cli()
