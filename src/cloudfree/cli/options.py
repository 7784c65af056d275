"""Options shared by commands, defined once, with parameter types that reject bad input early."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cloudfree.bands import canonical_band
from cloudfree.errors import InvalidInputError
from cloudfree.grid import DEFAULT_CHUNK_SIZE, parse_crs
from cloudfree.load import RESAMPLING_CHOICES, SAME_DAY_CHOICES
from cloudfree.masks import mask_names
from cloudfree.mgrs import parse_tile_id
from cloudfree.sources.providers import PROVIDERS
from cloudfree.timeframe import parse_date, parse_period

F = Callable[..., Any]


class _Checked(click.ParamType):
    """A parameter type that validates with a cloudfree parser and keeps the user's text."""

    def __init__(self, name: str, check: Callable[[str], object]) -> None:
        self.name = name
        self._check = check

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            self._check(value)
        except InvalidInputError as exc:
            self.fail(str(exc), param, ctx)
        return value


DATE = _Checked("date", lambda v: parse_date(v))
TILE = _Checked("tile", parse_tile_id)
CRS_TYPE = _Checked("crs", parse_crs)
BAND = _Checked("band", canonical_band)
PERIOD = _Checked("period", parse_period)


def _compose(*decorators: F) -> F:
    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


source_options = _compose(
    click.option(
        "--stac",
        default=None,
        help="STAC API URL, static catalog (catalog.json/collection.json) or ItemCollection file.",
    ),
    click.option(
        "--provider",
        type=click.Choice(sorted(PROVIDERS)),
        default=None,
        help="A known catalog by name (its API, collections and conventions).",
    ),
    click.option(
        "--archive",
        default=None,
        help="Folder or s3:// URL of an AWS tile-path layout (tiles/...) or of .SAFE products.",
    ),
    click.option(
        "--tile",
        "tiles",
        multiple=True,
        type=TILE,
        help="MGRS tile id for --archive (repeatable; default: the tiles the area touches).",
    ),
    click.option(
        "--collection",
        "collections",
        multiple=True,
        help="Collection id to search (repeatable); default: every collection.",
    ),
    click.option(
        "--bbox",
        nargs=4,
        type=float,
        default=None,
        metavar="MINX MINY MAXX MAXY",
        help="Area in longitude/latitude (EPSG:4326).",
    ),
    click.option(
        "--geometry-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Area from a .geojson, .shp or .gpkg (pixels outside it are nodata).",
    ),
    click.option("--start-date", type=DATE, required=True, help="First day, YYYY-MM-DD."),
    click.option("--end-date", type=DATE, required=True, help="Last day (inclusive), YYYY-MM-DD."),
    click.option(
        "--max-cloud-cover",
        type=click.FloatRange(0, 100),
        default=None,
        help="Skip scenes whose eo:cloud_cover is above this percentage.",
    ),
    click.option(
        "--max-items",
        type=click.IntRange(min=1),
        default=None,
        help="Use at most this many scenes (the earliest).",
    ),
)


def bands_option(verb: str) -> Callable[[F], F]:
    """``--bands``, repeatable, default true colour; ``verb`` says what the command does."""
    return click.option(
        "--bands",
        "bands",
        multiple=True,
        type=BAND,
        default=("B04", "B03", "B02"),
        show_default=True,
        help=f"Band to {verb} (repeatable): B04 or red, B08 or nir, ...",
    )


grid_options = _compose(
    click.option(
        "--crs",
        type=CRS_TYPE,
        default=None,
        help="Output CRS, e.g. EPSG:2157 or EPSG:4326 (default: UTM zone of the area).",
    ),
    click.option(
        "--resolution",
        type=float,
        default=None,
        help="Pixel size in CRS units: metres, or degrees for geographic CRSs (default 10 m).",
    ),
    click.option(
        "--chunk-size",
        type=click.IntRange(64, 8192),
        default=DEFAULT_CHUNK_SIZE,
        show_default=True,
        help="Tile size in pixels (one Zarr chunk and one work unit per tile and period).",
    ),
)


# Where the work units run: threads here, a local Dask cluster, or a running one.
engine_options = _compose(
    click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        help="Worker threads (default: CPU count).",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="Run on a local Dask cluster of N worker processes (--threads: threads per worker).",
    ),
    click.option(
        "--dask-scheduler",
        default=None,
        metavar="ADDRESS",
        help="Run on a running Dask cluster: the scheduler's address, e.g. tcp://10.0.0.5:8786.",
    ),
    click.option(
        "--dask-gateway",
        default=None,
        metavar="URL",
        help="Run on a new cluster of this dask-gateway server (extra: cloudfree[gateway]).",
    ),
    click.option(
        "--coiled", is_flag=True, help="Run on a new Coiled cluster (extra: cloudfree[coiled])."
    ),
    click.option(
        "--memory-limit",
        default=None,
        metavar="SIZE",
        help="Memory one worker may use, e.g. 4GB or 512MiB (default: the cluster's worker limit, "
        "or the memory available here); a job whose tiles do not fit is refused before it starts.",
    ),
)

# How a run goes: where, whether for real, and what it may reuse or replace.
run_options = _compose(
    engine_options,
    click.option(
        "--dry-run",
        is_flag=True,
        help="Print the plan (scenes, work units, output shape, bytes to read and write, peak "
        "memory per worker) and stop; nothing is read or written.",
    ),
    click.option("--overwrite", is_flag=True, help="Replace existing outputs."),
    click.option(
        "--resume",
        is_flag=True,
        help="Continue a stopped run in --out: only the work units not recorded as finished run.",
    ),
    click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=None,
        help="Process at most N (unfinished) work units, then stop; continue with --resume.",
    ),
)

# The cloud mask: which one, its options, a file of options. A cube stores the layers it reads.
cloud_mask_options = _compose(
    click.option(
        "--cloud-mask",
        default=None,
        metavar="NAME",
        help=f"Cloud mask: {', '.join(mask_names())}, or a plug-in as module:Class "
        "(default scl; `cloudfree masks` lists options; a cube stores the layers it reads).",
    ),
    click.option(
        "--mask-option",
        "mask_option_pairs",
        multiple=True,
        metavar="KEY=VALUE",
        help="A cloud-mask option (repeatable), e.g. dilation_m=60 or "
        "valid_classes=vegetation,water.",
    ),
    click.option(
        "--mask-config",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="TOML or JSON file of mask options (and cloud_mask); --mask-option values win.",
    ),
)

# How scenes are read onto the grid.
reading_options = _compose(
    click.option(
        "--resampling",
        type=click.Choice(RESAMPLING_CHOICES),
        default=None,
        help="Resampling for reflectance (default bilinear; class and probability layers are "
        "always nearest).",
    ),
    click.option(
        "--same-day",
        type=click.Choice(SAME_DAY_CHOICES),
        default=None,
        help="Where scenes of one solar day overlap, take pixels from the least cloudy scene "
        "(default) or the newest (the cdse-l3 preset's rule).",
    ),
)
