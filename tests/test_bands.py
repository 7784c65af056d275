import pytest

from cloudfree.bands import BANDS, BandKind, SclClass, canonical_band, resolve_bands
from cloudfree.errors import InvalidInputError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("B04", "B04"),
        ("b04", "B04"),
        ("red", "B04"),
        ("B04_10m", "B04"),
        ("B04_20m", "B04"),
        ("nir", "B08"),
        ("nir08", "B8A"),
        ("B8A", "B8A"),
        ("swir16", "B11"),
        ("scl", "SCL"),
        ("SCL_20m", "SCL"),
        # the cloud probability: Earth Search key, id, resolution suffix, EOPF variable,
        # Sen2Cor's QI_DATA file stem
        ("cloud", "CLD"),
        ("CLD", "CLD"),
        ("CLD_20m", "CLD"),
        ("cld", "CLD"),
        ("MSK_CLDPRB", "CLD"),
        ("MSK_CLDPRB_20m", "CLD"),
        ("msk_cldprb_60m", "CLD"),
        ("snow", "SNW"),
        ("SNW_20m", "SNW"),
        ("MSK_SNWPRB_20m", "SNW"),
        ("cirrus", "B10"),
    ],
)
def test_provider_names_map_to_one_band(name, expected):
    assert canonical_band(name).id == expected


@pytest.mark.parametrize("name", ["MSK_B04", "MSK_CLDPRBX", "cirrus_prob", "CLDPRB"])
def test_near_misses_are_unknown(name):
    with pytest.raises(InvalidInputError, match="Unknown band"):
        canonical_band(name)


def test_band_kinds():
    assert {b.kind for b in BANDS.values()} == set(BandKind)
    assert BANDS["B04"].is_reflectance and not BANDS["B04"].categorical
    assert BANDS["SCL"].categorical and not BANDS["SCL"].is_reflectance
    for band_id in ("CLD", "SNW"):
        band = BANDS[band_id]
        assert band.kind is BandKind.PROBABILITY
        assert not band.categorical and not band.is_reflectance
        assert band.resolution == 20


def test_unknown_band_names_the_choices():
    with pytest.raises(InvalidInputError, match=r"Unknown band 'B13'.*B02"):
        canonical_band("B13")


def test_requested_names_and_order_are_kept():
    resolved = resolve_bands(["nir", "B04", "green"])
    assert [(n, b.id) for n, b in resolved] == [("nir", "B08"), ("B04", "B04"), ("green", "B03")]


def test_same_band_twice_is_refused():
    with pytest.raises(InvalidInputError, match="both mean B04"):
        resolve_bands(["red", "B04"])


def test_scl_cannot_be_composited():
    with pytest.raises(InvalidInputError, match="--cloud-mask scl"):
        resolve_bands(["SCL"])


@pytest.mark.parametrize(("name", "what"), [("CLD", "cloud"), ("cloud", "cloud"), ("SNW", "snow")])
def test_probability_layers_cannot_be_composited(name, what):
    with pytest.raises(
        InvalidInputError, match=f"{what} probability layer.*--cloud-mask probability"
    ):
        resolve_bands(["B04", name])


def test_scl_classes_parse_by_name_and_number():
    assert SclClass.parse("vegetation") is SclClass.VEGETATION
    assert SclClass.parse("cloud-high-probability") is SclClass.CLOUD_HIGH_PROBABILITY
    assert SclClass.parse("11") is SclClass.SNOW
    with pytest.raises(InvalidInputError, match="0-11"):
        SclClass.parse(12)
    with pytest.raises(InvalidInputError, match="Unknown SCL class"):
        SclClass.parse("clouds")
