"""Plug-in options from the command line (``KEY=VALUE``) and config files, and their coercion.

Options of cloud masks and compositing methods arrive as text from ``--mask-option`` /
``--method-option`` and typed from TOML/JSON files and Python; plug-ins coerce them with the
helpers here so that ``dilation_m=60`` and ``dilation_m = 60`` mean the same and a bad value names
the option and what it takes.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from cloudfree.errors import InvalidInputError


def parse_option_pairs(
    pairs: Iterable[str], *, flag: str = "--mask-option", example: str = "dilation_m=60"
) -> dict[str, str]:
    """``["dilation_m=60", "preset=strict"]`` to a dict; a repeated key is an error."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InvalidInputError(f"{flag} {pair!r} is not KEY=VALUE, e.g. {flag} {example}.")
        if key in options:
            raise InvalidInputError(f"{flag} {key!r} is given twice.")
        options[key] = value.strip()
    return options


def load_mask_config(path: str | Path) -> tuple[str | None, dict[str, object]]:
    """Read a mask config file: TOML (``.toml``) or JSON (``.json``).

    The file holds the options at its top level, plus optionally ``cloud_mask = "NAME"``; or a
    ``[mask]`` table with the same keys. Returns ``(mask name or None, options)``.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"Cannot read mask config {file}: {exc.strerror}.") from None
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        elif file.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            raise InvalidInputError(f"Mask config {file} must be a .toml or .json file.")
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInputError(f"Mask config {file} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"Mask config {file} must hold a table of options.")
    table = data.get("mask", data)
    if not isinstance(table, dict):
        raise InvalidInputError(f"The [mask] entry of {file} must be a table of options.")
    options = {k.replace("-", "_"): v for k, v in table.items()}
    name = options.pop("cloud_mask", None)
    if name is not None and not isinstance(name, str):
        raise InvalidInputError(f"cloud_mask in {file} must be a mask name.")
    return name, options


def merged_options(*layers: Mapping[str, object] | None) -> dict[str, object]:
    """Options from several places, later ones winning (file, then command line)."""
    merged: dict[str, object] = {}
    for layer in layers:
        merged.update(layer or {})
    return merged


def as_float(
    value: object, name: str, *, minimum: float = 0.0, maximum: float | None = None
) -> float:
    """A number option, checked against its range."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be a number, got {value!r}") from None
    if number != number or number < minimum or (maximum is not None and number > maximum):
        upper = f" and {maximum}" if maximum is not None else ""
        raise ValueError(f"option {name} must be between {minimum}{upper}, got {value!r}")
    return number


def as_int(value: object, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole-number option, checked against its range."""
    number = as_float(value, name, minimum=minimum, maximum=maximum)
    if number != int(number):
        raise ValueError(f"option {name} must be a whole number, got {value!r}")
    return int(number)


def as_bool(value: object, name: str) -> bool:
    """A yes/no option: a bool, or ``true``/``false``/``yes``/``no``/``1``/``0`` as text."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"option {name} must be true or false, got {value!r}")


def as_numbers(value: object, name: str, count: int) -> tuple[float, ...]:
    """``count`` numbers: ``"120,180,240"`` or a list from a file or Python."""
    try:
        numbers = tuple(float(v) for v in as_names(value))
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be {count} numbers, got {value!r}") from None
    if len(numbers) != count:
        raise ValueError(f"option {name} must be {count} numbers, got {value!r}")
    return numbers


def as_names(value: object) -> tuple[str | int, ...]:
    """A list option: a comma-separated string, or a list/tuple/set from a file or Python."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, int):
        return (value,)
    if isinstance(value, Iterable):
        return tuple(value)
    raise ValueError(f"expected a list of names, got {value!r}")


def with_mask_config(
    cloud_mask: str | None,
    mask_options: Mapping[str, object] | None,
    mask_config: str | Path | None,
) -> tuple[str | None, dict[str, object]]:
    """The mask name and options once a ``--mask-config`` file is read (the command line wins)."""
    if mask_config is None:
        return cloud_mask, dict(mask_options or {})
    file_mask, file_options = load_mask_config(mask_config)
    if cloud_mask is not None and file_mask is not None and cloud_mask != file_mask:
        raise InvalidInputError(
            f"--cloud-mask {cloud_mask} contradicts cloud_mask = {file_mask!r} in {mask_config}."
        )
    return cloud_mask or file_mask, merged_options(file_options, mask_options)


def check_run_flags(*, resume: bool, overwrite: bool, limit: int | None) -> None:
    """Check ``--resume``, ``--overwrite`` and ``--limit`` of a command that writes a store."""
    if resume and overwrite:
        raise InvalidInputError("--resume continues a run and --overwrite replaces it; pick one.")
    if limit is not None and limit < 1:
        raise InvalidInputError(f"--limit must be at least 1 work unit, got {limit}.")
