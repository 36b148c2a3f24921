"""Where the non-Python files the package needs live, installed or in a checkout.

A wheel carries `envoy/` and `examples/quickstart/` inside the package (see
pyproject's force-include); an editable install reads them from the checkout.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_INSTALLED = {
    "envoy": _PACKAGE_DIR / "_data" / "envoy",
    "examples/quickstart": _PACKAGE_DIR / "_data" / "quickstart",
}
_CHECKOUT = _PACKAGE_DIR.parent


def data_dir(name: str) -> Path:
    """The directory `name` ("envoy" or "examples/quickstart"), wherever it is installed."""
    installed = _INSTALLED[name]
    if installed.is_dir():
        return installed
    checkout = _CHECKOUT / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"meshroute's {name}/ directory is missing from this installation")


def bootstrap_template() -> Path:
    return data_dir("envoy") / "bootstrap.yaml"


def quickstart_dir() -> Path:
    return data_dir("examples/quickstart")
