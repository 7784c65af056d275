"""Cloud-mask figures on real Sentinel-2 pixels, for the documentation (``docs/masks.md``).

Everything here reads the third-party material described in ``shared/realdata/MANIFEST.md``
and returns plain values; nothing prints. Two sets of pixels exist:

- **S2A_29RKH_20200219** (Western Sahara, EPSG:32629): one real L2A product whose COGs
  rio-tiler-pds decimated to 100 m (10 m bands) and 200 m (20 m bands and SCL). The SCL
  classes are real; at 200 m one pixel stands for 100 native 20 m SCL pixels.
- **eo-learn's TestEOPatch** (Slovenia, EPSG:32633, 101 x 100 px at 10 m): 68 dates of real NDVI
  with reference cloud masks (``CLM``) and cloud probabilities (``CLP``) from s2cloudless, and
  5 of those dates as real L1C top-of-atmosphere reflectance in all 13 bands.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pystac
import rasterio
from odc.geo.geobox import GeoBox

from cloudfree.bands import SclClass
from cloudfree.composite import Observations, make_compositor
from cloudfree.grid import pixel_size_metres
from cloudfree.load import to_reflectance
from cloudfree.masks.base import CloudMask, NoMask
from cloudfree.masks.morphology import dilate
from cloudfree.masks.probability import ProbabilityMask
from cloudfree.masks.scl import SclMask
from cloudfree.sources.stac import scene_from_item
from cloudfree.stack import NODATA, PROBABILITY_NODATA, REFLECTANCE_SCALE, Stack

#: The decimated L2A product, relative to the realdata folder.
RKH_PIXELS = Path("pixels/rio-tiler-pds_S2A_29RKH_20200219_0_L2A")
#: Its Earth Search v1 item.
RKH_ITEM = Path("stac_items/earth_search_v1/S2A_29RKH_20200219_0_L2A.es_v1_sentinel-2-l2a.json")
#: eo-learn's test patch.
EOLEARN = Path("pixels/eo-learn_TestEOPatch_Slovenia_L1C")
#: Band order of ``REFERENCE_SCENES.npy``.
L1C_BANDS = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
)
#: Timestamp index of each of the 5 reference scenes (MANIFEST.md, section 2).
REFERENCE_SCENE_DATES = (2, 1, 4, 3, 0)
#: SCL mask presets compared.
SCL_PRESETS = ("default", "cdse-l3", "strict")


# --------------------------------------------------------------------------------------------
# (a) SCL on S2A_29RKH_20200219


@dataclass(frozen=True)
class Cleanup:
    """The SCL mask with one opening and buffer radius."""

    opening_m: float
    dilation_m: float
    clear_fraction: float
    """Share of the pixels with data the mask keeps."""
    speckle_removed: int
    """Rejected pixels the opening gives back (patches narrower than the opening disk)."""
    buffer_added: int
    """Pixels the buffer around clouds, cirrus and shadows rejects on top."""


@dataclass(frozen=True)
class SclFigures:
    """The SCL classes of S2A_29RKH_20200219 and what the SCL mask keeps of them.

    Everything is computed at 200 m on the SCL file's own grid (549 x 549 px, no resampling),
    with the 20 m band B11 (also decimated to 200 m) as the stack's data band.
    """

    pixel_size_m: float
    grid_pixels: int
    """Pixels of the grid."""
    pixels: int
    """Pixels with data (SCL class other than no_data and a B11 value)."""
    class_fractions: dict[str, float]
    """Share of all pixels of each SCL class, by class name (``no_data`` included)."""
    clear_fraction: dict[str, float]
    """Preset to the share of pixels with data kept, without clean-up."""
    cleanup: dict[str, tuple[Cleanup, ...]]
    """Preset to the mask with each clean-up radius pair."""


def scl_29rkh(
    realdata: Path,
    cleanups: Sequence[tuple[float, float]] = ((20.0, 60.0), (200.0, 600.0), (400.0, 600.0)),
) -> SclFigures:
    """SCL class shares and SCL mask clear fractions of the real S2A_29RKH_20200219 product.

    ``cleanups`` are (opening, buffer) radii in metres. The mask's defaults, 20 m and 60 m, are
    below one 200 m pixel here and change nothing; 200 m / 600 m is that clean-up scaled by the
    decimation (x10), 400 m / 600 m a stronger opening.
    """
    stack = rkh_stack(realdata)
    scl = stack.layers["SCL"]
    pixel = pixel_size_metres(stack.geobox)
    counts = np.bincount(scl.ravel(), minlength=256)
    fractions = {c.name.lower(): float(counts[c] / scl.size) for c in SclClass}
    base = {p: SclMask(preset=p, opening_m=0, dilation_m=0) for p in SCL_PRESETS}
    present = int(stack.has_data.sum())
    clear = {p: float(m(stack, pixel).sum() / present) for p, m in base.items()}
    cleanup: dict[str, tuple[Cleanup, ...]] = {}
    for preset in SCL_PRESETS:
        rows = []
        unclean = int(base[preset](stack, pixel).sum())
        for opening_m, dilation_m in cleanups:
            opened = int(
                SclMask(preset=preset, opening_m=opening_m, dilation_m=0)(stack, pixel).sum()
            )
            both = int(
                SclMask(preset=preset, opening_m=opening_m, dilation_m=dilation_m)(
                    stack, pixel
                ).sum()
            )
            rows.append(
                Cleanup(
                    opening_m=opening_m,
                    dilation_m=dilation_m,
                    clear_fraction=both / present,
                    speckle_removed=opened - unclean,
                    buffer_added=opened - both,
                )
            )
        cleanup[preset] = tuple(rows)
    return SclFigures(
        pixel_size_m=pixel,
        grid_pixels=int(scl.size),
        pixels=present,
        class_fractions=fractions,
        clear_fraction=clear,
        cleanup=cleanup,
    )


def rkh_stack(realdata: Path) -> Stack:
    """One-day stack of S2A_29RKH_20200219 at 200 m: B11 as data and the SCL layer."""
    folder = realdata / RKH_PIXELS
    with rasterio.open(folder / "SCL.tif") as src:
        scl = src.read(1)
        geobox = GeoBox(src.shape, src.transform, src.crs.to_wkt())
    with rasterio.open(folder / "B11.tif") as src:
        if src.transform != geobox.affine:
            raise ValueError("B11.tif and SCL.tif are expected on the same 200 m grid.")
        dn = src.read(1).astype(np.float32)
        dn[dn == src.nodata] = np.nan
    # scale and offset as the real item and its provider's convention decide them
    scene = scene_from_item(pystac.Item.from_file(str(realdata / RKH_ITEM)))
    data = to_reflectance(dn, scene.bands["B11"])
    return Stack(
        geobox=geobox,
        days=(date(2020, 2, 19),),
        bands=("B11",),
        data=data[np.newaxis, np.newaxis],
        layers=MappingProxyType({"SCL": scl[np.newaxis]}),
    )


def local_rkh_item(realdata: Path, folder: Path) -> Path:
    """A copy of the real S2A_29RKH_20200219 item whose assets are the local decimated COGs.

    Assets without a local file (the other bands, the JP2 alternates, metadata) are dropped, so
    nothing is fetched; ``proj:*``/``gsd`` still describe the full-resolution originals (readers
    use the files' own georeferencing).
    """
    item = json.loads((realdata / RKH_ITEM).read_text(encoding="utf-8"))
    pixels = realdata / RKH_PIXELS
    assets = {}
    for key, asset in item["assets"].items():
        name = Path(str(asset["href"]).split("?")[0]).name
        local = pixels / name
        if key.endswith("-jp2") or not name.endswith(".tif") or not local.exists():
            continue
        assets[key] = {**asset, "href": str(local.resolve())}
    item["assets"] = assets
    item["links"] = []
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "S2A_29RKH_20200219_0_L2A.local.json"
    path.write_text(json.dumps(item), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# (b) eo-learn's test patch: probability masks vs the reference CLM


@dataclass(frozen=True)
class MaskAgreement:
    """A mask's cloud decision against a reference cloud mask, per observation."""

    observations: int
    """Observations with data compared."""
    accuracy: float
    """Share of observations where both agree (cloud or clear)."""
    omission: float
    """Share of the reference's cloudy observations the mask calls clear."""
    commission: float
    """Share of the reference's clear observations the mask rejects."""


@dataclass(frozen=True)
class CompositeScore:
    """A median NDVI composite made with one mask, against the one made with the reference."""

    mask: str
    """``describe()`` of the mask."""
    agreement: MaskAgreement
    pixels: int
    """Pixels where both composites have a value."""
    missing: int
    """Pixels with a reference value but none with this mask."""
    mae: float
    """Mean absolute NDVI difference."""
    within_005: float
    """Share of pixels within 0.05 NDVI of the reference composite."""


def eolearn_stack(realdata: Path) -> tuple[Stack, np.ndarray, np.ndarray]:
    """The 68-date NDVI stack with ``CLD`` = s2cloudless probability in percent.

    Returns the stack, the reference cloud mask ``CLM`` ``(time, y, x)`` bool and ``IS_DATA``.
    NDVI is stored like reflectance (``round(NDVI * 10000)`` int16) as the one band ``NDVI``.
    Two of the 68 timestamps fall on one day (2015-12-08); they stay separate layers.
    """
    folder = realdata / EOLEARN
    ndvi = np.load(folder / "NDVI.npy")[..., 0]
    clm = np.load(folder / "CLM.npy")[..., 0].astype(bool)
    clp = np.load(folder / "CLP.npy")[..., 0]
    is_data = np.load(folder / "IS_DATA.npy")[..., 0].astype(bool)
    data = np.where(is_data, np.rint(ndvi / REFLECTANCE_SCALE), NODATA).astype(np.int16)
    cld = np.where(is_data, np.rint(clp * 100), PROBABILITY_NODATA).astype(np.uint8)
    stack = Stack(
        geobox=eolearn_geobox(realdata),
        days=tuple(t.date() for t in eolearn_timestamps(realdata)),
        bands=("NDVI",),
        data=data[:, np.newaxis],
        layers=MappingProxyType({"CLD": cld}),
    )
    return stack, clm, is_data


def eolearn_geobox(realdata: Path) -> GeoBox:
    """The patch's 101 x 100 px grid (about 10 m) from ``bbox.geojson``."""
    polygon = json.loads((realdata / EOLEARN / "bbox.geojson").read_text(encoding="utf-8"))
    xs, ys = zip(*polygon["coordinates"][0], strict=True)
    return GeoBox.from_bbox((min(xs), min(ys), max(xs), max(ys)), "EPSG:32633", shape=(101, 100))


def eolearn_timestamps(realdata: Path) -> list[datetime]:
    """The 68 acquisition times."""
    text = (realdata / EOLEARN / "timestamps.json").read_text(encoding="utf-8")
    return [datetime.fromisoformat(t) for t in json.loads(text)]


def agreement(cloudy: np.ndarray, reference: np.ndarray, where: np.ndarray) -> MaskAgreement:
    """Compare ``cloudy`` with the ``reference`` cloud mask over the observations ``where``."""
    mask, ref = cloudy[where], reference[where]
    return MaskAgreement(
        observations=int(where.sum()),
        accuracy=float((mask == ref).mean()),
        omission=float((ref & ~mask).sum() / max(int(ref.sum()), 1)),
        commission=float((mask & ~ref).sum() / max(int((~ref).sum()), 1)),
    )


def eolearn_masks() -> list[CloudMask]:
    """The masks compared: none, and probability at 20/40/60 % without and with clean-up."""
    masks: list[CloudMask] = [NoMask()]
    for threshold in (20, 40, 60):
        masks.append(ProbabilityMask(threshold=threshold, opening_m=0, dilation_m=0))
        masks.append(ProbabilityMask(threshold=threshold))
    return masks


def eolearn_composites(
    realdata: Path, masks: Iterable[CloudMask] | None = None
) -> list[CompositeScore]:
    """Median NDVI composites with each mask, scored against the reference-mask composite.

    The reference composite uses ``IS_DATA & ~CLM``. Honest caveat: ``CLM`` was itself made
    from the same s2cloudless probabilities as ``CLP`` (a disk mean, a 0.4 threshold and a
    dilation, see :func:`s2cloudless_postprocessing_fit`), so a probability mask near 40 % is
    close to the reference by construction; the figures show how much the threshold and the
    clean-up move a composite, and how far an unmasked one is, not an independent accuracy.
    """
    stack, clm, is_data = eolearn_stack(realdata)
    pixel = pixel_size_metres(stack.geobox)
    median = make_compositor("median")

    def composite(valid: np.ndarray) -> np.ndarray:
        return median(Observations(data=stack.data, valid=valid, nodata=int(NODATA))).values[0]

    reference = composite(is_data & ~clm)
    has_reference = reference != NODATA
    scores = []
    for mask in eolearn_masks() if masks is None else masks:
        clear = mask(stack, pixel)
        values = composite(clear)
        both = has_reference & (values != NODATA)
        diff = np.abs(values[both].astype(np.float64) - reference[both]) * REFLECTANCE_SCALE
        scores.append(
            CompositeScore(
                mask=mask.describe(),
                agreement=agreement(~clear, clm, is_data),
                pixels=int(both.sum()),
                missing=int((has_reference & (values == NODATA)).sum()),
                mae=float(diff.mean()) if diff.size else float("nan"),
                within_005=float((diff <= 0.05).mean()) if diff.size else float("nan"),
            )
        )
    return scores


# --------------------------------------------------------------------------------------------
# s2cloudless on the real L1C scenes


@dataclass(frozen=True)
class DateAgreement:
    """The s2cloudless mask on one real L1C scene, against the reference CLM of its date."""

    day: date
    reference_cloudy: float
    """Share of the patch the reference CLM calls cloud."""
    cloudy: float
    """Share the mask calls cloud."""
    agreement: MaskAgreement
    probability_mae: float
    """Mean absolute difference between the 10 m probabilities and the reference CLP."""


def reference_scenes_stack(realdata: Path) -> Stack:
    """The 5 real L1C scenes: B04 as the data band, all 13 bands as layers (int16 x 10000)."""
    folder = realdata / EOLEARN
    scenes = np.load(folder / "REFERENCE_SCENES.npy")
    when = eolearn_timestamps(realdata)
    values = np.rint(scenes / REFLECTANCE_SCALE).astype(np.int16)
    layers = {band: np.ascontiguousarray(values[..., i]) for i, band in enumerate(L1C_BANDS)}
    return Stack(
        geobox=eolearn_geobox(realdata),
        days=tuple(when[i].date() for i in REFERENCE_SCENE_DATES),
        bands=("B04",),
        data=layers["B04"][:, np.newaxis],
        layers=MappingProxyType(layers),
    )


def s2cloudless_reference_scenes(
    realdata: Path, options: Mapping[str, object] | None = None
) -> list[DateAgreement]:
    """The s2cloudless mask (needs the extra) on the 5 real L1C scenes vs the reference CLM.

    Three of the dates are clear and two fully cloudy in the reference; there is no partly
    cloudy L1C date in the material.
    """
    from cloudfree.masks.s2cloudless import S2CloudlessMask

    folder = realdata / EOLEARN
    clm = np.load(folder / "CLM.npy")[..., 0].astype(bool)[list(REFERENCE_SCENE_DATES)]
    clp = np.load(folder / "CLP.npy")[..., 0][list(REFERENCE_SCENE_DATES)]
    stack = reference_scenes_stack(realdata)
    mask = S2CloudlessMask(**dict(options or {}))  # type: ignore[arg-type]
    cloudy = ~mask(stack, pixel_size_metres(stack.geobox))
    probability, _ = mask.probability(stack)
    everywhere = np.ones(clm.shape[1:], dtype=bool)
    return [
        DateAgreement(
            day=stack.days[i],
            reference_cloudy=float(clm[i].mean()),
            cloudy=float(cloudy[i].mean()),
            agreement=agreement(cloudy[i], clm[i], everywhere),
            probability_mae=float(np.abs(probability[i] - clp[i]).mean()),
        )
        for i in range(len(stack.days))
    ]


@dataclass(frozen=True)
class PostprocessingFit:
    """One set-up of s2cloudless's post-processing, applied to ``CLP``, against ``CLM``."""

    threshold: float
    average_over_m: float
    dilation_m: float
    agreement: MaskAgreement
    partly_cloudy_accuracy: float
    """Accuracy on the dates the reference calls neither all clear nor all cloud."""


def s2cloudless_postprocessing_fit(
    realdata: Path,
    setups: Sequence[tuple[float, float, float]] = (
        (0.4, 0.0, 0.0),
        (0.4, 80.0, 40.0),
        (0.4, 160.0, 80.0),
        (0.4, 320.0, 160.0),
        (0.4, 640.0, 320.0),
    ),
) -> list[PostprocessingFit]:
    """How well each (threshold, mean radius, buffer radius) turns ``CLP`` into ``CLM``.

    Uses the s2cloudless mask's own post-processing (:func:`~cloudfree.masks.s2cloudless.
    averaged_above` and the morphology dilation) on the reference probabilities, which are the
    detector's output upsampled to 10 m; the set-up that reproduces ``CLM`` best says how the
    reference was made and grounds the mask's default radii. Needs no extra.
    """
    from cloudfree.masks.s2cloudless import averaged_above

    folder = realdata / EOLEARN
    clm = np.load(folder / "CLM.npy")[..., 0].astype(bool)
    clp = np.load(folder / "CLP.npy")[..., 0]
    is_data = np.load(folder / "IS_DATA.npy")[..., 0].astype(bool)
    pixel = pixel_size_metres(eolearn_geobox(realdata))
    share = clm.mean(axis=(1, 2))
    partly = (share > 0) & (share < 1)
    fits = []
    for threshold, average_m, dilation_m in setups:
        cloudy = averaged_above(clp, is_data, average_m / pixel, threshold)
        cloudy = dilate(cloudy, dilation_m / pixel)
        fits.append(
            PostprocessingFit(
                threshold=threshold,
                average_over_m=average_m,
                dilation_m=dilation_m,
                agreement=agreement(cloudy, clm, is_data),
                partly_cloudy_accuracy=float((cloudy[partly] == clm[partly]).mean()),
            )
        )
    return fits


# --------------------------------------------------------------------------------------------
# The real-pixel sections of docs/masks.md


def markdown(realdata: Path) -> list[str]:
    """The real-pixel figures as Markdown lines (sections for :mod:`.mask_report`)."""
    lines = [*_scl_section(scl_29rkh(realdata)), ""]
    lines += [*_eolearn_section(eolearn_composites(realdata)), ""]
    lines += [*_fit_section(s2cloudless_postprocessing_fit(realdata)), ""]
    lines += _s2cloudless_section(realdata)
    return lines


def _pct(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{100 * value:.{digits}f} %"


def _scl_section(figures: SclFigures) -> list[str]:
    shares = ", ".join(
        f"{name} {_pct(share, 2)}"
        if share >= 1e-4
        else f"{name} {round(share * figures.grid_pixels)} px"
        for name, share in sorted(figures.class_fractions.items(), key=lambda kv: -kv[1])
        if share > 0
    )
    lines = [
        "### SCL mask on S2A_29RKH_20200219 (real L2A, decimated to 200 m)",
        "",
        f"The whole tile's real SCL as rio-tiler-pds decimated it ({figures.pixels} pixels of "
        f"{figures.pixel_size_m:g} m, each standing for 100 native 20 m pixels), on its own "
        f"grid. Classes: {shares}. The default clean-up radii (20 m opening, 60 m buffer) are "
        "below one pixel here and change nothing; 200 m / 600 m is that clean-up scaled by the "
        "decimation, 400 m / 600 m a stronger opening. *Given back*: rejected pixels the "
        "opening clears (speckle); *taken*: pixels the buffer rejects on top.",
        "",
        "| SCL preset | opening | buffer | clear | given back (px) | taken (px) |",
        "|---|---|---|---|---|---|",
    ]
    for preset, clear in figures.clear_fraction.items():
        lines.append(f"| {preset} | 0 m | 0 m | {_pct(clear, 2)} | | |")
        for row in figures.cleanup[preset]:
            lines.append(
                f"| {preset} | {row.opening_m:g} m | {row.dilation_m:g} m "
                f"| {_pct(row.clear_fraction, 2)} | {row.speckle_removed} | {row.buffer_added} |"
            )
    return lines


def _eolearn_section(scores: Sequence[CompositeScore]) -> list[str]:
    observations = scores[0].agreement.observations if scores else 0
    lines = [
        "### Probability mask on eo-learn's test patch (real, 68 dates)",
        "",
        "A 1 km patch in Slovenia at 10 m: 68 dates of real NDVI with s2cloudless cloud "
        "probabilities (`CLP`) and reference cloud masks (`CLM`). Each mask's cloud decision is "
        f"compared with `CLM` on all {observations} observations, and its median NDVI composite "
        "with the median made with `CLM`. Caveat: `CLM` was made from the same probabilities "
        "(a disk mean, a 0.4 threshold and a buffer, see the next table), so a threshold near "
        "40 % agrees by construction; the table shows how far the threshold and the clean-up "
        "move a composite, not an independent accuracy.",
        "",
        "| mask | agreement | omission | commission | NDVI MAE | within 0.05 NDVI |",
        "|---|---|---|---|---|---|",
    ]
    for score in scores:
        a = score.agreement
        lines.append(
            f"| {score.mask} | {_pct(a.accuracy)} | {_pct(a.omission)} | "
            f"{_pct(a.commission)} | {score.mae:.4f} | {_pct(score.within_005)} |"
        )
    return lines


def _fit_section(fits: Sequence[PostprocessingFit]) -> list[str]:
    lines = [
        "### How the reference CLM was made: s2cloudless post-processing of CLP",
        "",
        "The s2cloudless mask's post-processing (mean over a disk, threshold, buffer) applied "
        "to the reference probabilities, against the reference masks. A 80-160 m mean "
        "reproduces them; the 640 m / 320 m of the detector run at 160 m with "
        "`average_over=4, dilation_size=2` does not. The mask's defaults are 160 m / 80 m "
        "(eo-learn's set-up: the detector at 80 m with `average_over=2, dilation_size=1`).",
        "",
        "| threshold | mean radius | buffer | agreement | omission | commission "
        "| agreement, partly cloudy dates |",
        "|---|---|---|---|---|---|---|",
    ]
    for fit in fits:
        a = fit.agreement
        lines.append(
            f"| {fit.threshold:g} | {fit.average_over_m:g} m | {fit.dilation_m:g} m "
            f"| {_pct(a.accuracy)} | {_pct(a.omission)} | {_pct(a.commission)} "
            f"| {_pct(fit.partly_cloudy_accuracy)} |"
        )
    return lines


def _s2cloudless_section(realdata: Path) -> list[str]:
    title = ["### s2cloudless mask on 5 real L1C scenes", ""]
    try:
        figures = s2cloudless_reference_scenes(realdata)
    except ValueError as exc:  # the extra is not installed
        return [*title, f"Not measured: the s2cloudless mask {exc}."]
    lines = [
        *title,
        "The mask with its defaults (threshold 0.4, 160 m mean, 80 m buffer) on the patch's "
        "5 dates of real L1C reflectance, against `CLM`. There is no partly cloudy L1C date "
        "in the material. *Probability MAE* compares the mask's 10 m probabilities with `CLP`.",
        "",
        "| date | CLM cloud | mask cloud | agreement | omission | commission | probability MAE |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        a = f.agreement
        lines.append(
            f"| {f.day.isoformat()} | {_pct(f.reference_cloudy)} | {_pct(f.cloudy)} "
            f"| {_pct(a.accuracy)} | {_pct(a.omission)} | {_pct(a.commission)} "
            f"| {f.probability_mae:.3f} |"
        )
    return lines
