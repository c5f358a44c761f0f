"""Figures as a person reads them: bytes, joules and any SI quantity, with their units."""

from __future__ import annotations


def fmt_bytes(n: float) -> str:
    """``n`` bytes in decimal units with two decimals: ``53.97 MB``, ``602.11 kB``, ``512 B``."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def fmt_j(j: float) -> str:
    """``j`` joules to three significant digits: ``240 mJ``, ``1.5 uJ``, ``3 pJ``."""
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9)):
        if abs(j) >= scale:
            return f"{j / scale:.3g} {unit}"
    return f"{j * 1e12:.3g} pJ"


def fmt_si(value: float, unit: str) -> str:
    """``value`` with an SI prefix from giga to nano, three significant digits: ``19.4 ms``, ``8.45 kB``."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"
