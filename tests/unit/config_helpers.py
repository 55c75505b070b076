"""Shared helpers of the network-file tests: a file's errors, and one value changed by its path."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from controller.config import ConfigError, parse_model


def data_of(text: str) -> dict[str, Any]:
    """The YAML ``text`` as plain data (to change before parsing)."""
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def errors(d: dict[str, Any]) -> list[str]:
    """The errors :func:`parse_model` reports for ``d`` (it must reject it)."""
    with pytest.raises(ConfigError) as info:
        parse_model(d)
    return list(info.value.errors)


def set_path(d: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at ``path`` (keys joined by ``/``) in ``d``, making mappings on the way."""
    *parents, last = path.split("/")
    for key in parents:
        d = d.setdefault(key, {})
    d[last] = value
