"""``argparse`` value types shared by several sub-commands.

Not a sub-command: :func:`cascal.cli.build_parser` skips modules whose name starts with ``_``. A
value these types refuse makes ``argparse`` print the usage and exit with status 2.
"""

from __future__ import annotations

import argparse
from typing import Any, Optional, Union

__all__ = ["add_out_of_range", "comma_list", "number_or_auto", "positive_int", "read_prices", "share"]


def comma_list(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated list (at least one)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list with at least one name")
    return items


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def share(text: str) -> float:
    """A number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {text!r}")
    return value


def add_out_of_range(parser: argparse.ArgumentParser, default: str = "error") -> None:
    """The ``--out-of-range`` option of a command that loads a dataset's answers: what a prediction
    letter beyond its question's options means (``load_dataset``'s ``out_of_range``)."""
    from cascal.io import OUT_OF_RANGE_CHOICES

    parser.add_argument(
        "--out-of-range",
        choices=OUT_OF_RANGE_CHOICES,
        default=default,
        dest="out_of_range",
        help="a prediction letter beyond its question's options (J on a 9-option question): "
        f"error refuses the dataset, unparsable counts it as '?' (default {default})",
    )


def number_or_auto(text: str) -> Union[float, str]:
    """``"auto"`` or a float (the calibrated routing constants of ``cascal train``)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def import_extra(module: str, command: str, extra: str) -> Any:
    """``importlib.import_module(module)``, or a :class:`cascal.errors.ConfigError` telling to install
    ``cascal[extra]`` when one of its dependencies is missing."""
    import importlib

    from cascal.errors import ConfigError

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"cascal {command} needs the optional extra: pip install 'cascal[{extra}]' ({(exc.name or '?').split('.')[0]} is missing)"
        ) from None


def read_prices(path: Optional[str]) -> Any:
    """The prices of a ``--prices`` option: a prices file, or a pool.yaml's price fields (a file with a
    ``models`` list). The file is read once, by :func:`cascal.yaml_files.read_yaml`."""
    if path is None:
        return None
    from pathlib import Path

    from cascal.router.costs import load_prices, parse_prices
    from cascal.yaml_files import read_yaml

    if not Path(path).exists():
        return load_prices(path)  # its "no such prices file"
    data = read_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("models"), list):
        from cascal.llm.config import parse_pool

        return parse_pool(data, source=Path(path).name).prices()
    return parse_prices(data, source=path)
