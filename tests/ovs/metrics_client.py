"""Read the controller's /metrics in tests."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(port: int, name: str, **labels: str) -> float:
    """Sum of samples named ``name`` whose labels include ``labels``."""
    return sum(
        v for (n, ls), v in scrape(port).items() if n == name and all((k, val) in ls for k, val in labels.items())
    )
