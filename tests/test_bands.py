import pytest

from cloudfree.bands import SclClass, canonical_band, resolve_bands
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
    ],
)
def test_provider_names_map_to_one_band(name, expected):
    assert canonical_band(name).id == expected


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


def test_scl_classes_parse_by_name_and_number():
    assert SclClass.parse("vegetation") is SclClass.VEGETATION
    assert SclClass.parse("cloud-high-probability") is SclClass.CLOUD_HIGH_PROBABILITY
    assert SclClass.parse("11") is SclClass.SNOW
    with pytest.raises(InvalidInputError, match="0-11"):
        SclClass.parse(12)
    with pytest.raises(InvalidInputError, match="Unknown SCL class"):
        SclClass.parse("clouds")
