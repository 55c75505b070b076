"""Plain YAML scalars kept as written, and the rules that read numbers from them.

PyYAML implements YAML 1.1, where a plain ``0100`` is octal 64, ``1:20`` is
80 (base 60), ``0o17`` and ``1e3`` are strings, and ``no``, ``on``, ``yes``
are booleans. The network-file loader does not let it decide: every plain
scalar that YAML 1.1 would read as a number or a boolean, or that looks like
a number (:data:`NUMBER_LIKE`), reaches the checks as its text, a
:class:`PlainNumber` or :class:`PlainBool`. Both are ``str``, so where a name
is expected the text is the name (a network ``no``, a VM ``1e3``). Where a
number is expected, these rules read the text:

- an integer is decimal, or ``0x`` hex, ``0o`` octal, ``0b`` binary, with an
  optional sign and ``_`` between digits (Python's integer literals);
- where a fraction is allowed, also ``1.5``, ``.5``, ``1e3``, ``2.5e-3``;
- a leading zero (``0100``, ``00``, ``007.5``) is an error, never octal;
- so is base 60 (``1:20``), and a fraction or ``.inf`` where an integer is
  expected;
- a boolean is ``true`` or ``false`` (also ``True``, ``TRUE``...); ``yes``,
  ``no``, ``on``, ``off`` are not booleans.

Each error message says what to write instead. Standard library only.

>>> to_int(PlainNumber("0x64"), "an integer")
100
>>> to_int(PlainNumber("0100"), "an integer")
Traceback (most recent call last):
ValueError: 0100 has a leading zero: write 100, or 0o100 for octal
"""

from __future__ import annotations

import math
import re

__all__ = [
    "NUMBER_LIKE",
    "Plain",
    "PlainBool",
    "PlainNumber",
    "leading_zero",
    "to_bool",
    "to_float",
    "to_int",
]


class Plain(str):
    """The text of a plain (unquoted) scalar that YAML 1.1 would not keep as a string."""

    __slots__ = ()


class PlainNumber(Plain):
    """A plain scalar that YAML 1.1 reads as a number or that looks like one: ``0100``, ``1:20``, ``1e3``."""

    __slots__ = ()


class PlainBool(Plain):
    """A plain scalar that YAML 1.1 reads as a boolean: ``true``, ``no``, ``On``..."""

    __slots__ = ()


NUMBER_LIKE = re.compile(
    r"""^[-+]?(?:0[xXoObB][0-9a-fA-F_]+
              |[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?
              |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?)$""",
    re.X,
)
"""Plain scalars that look like numbers although YAML 1.1 keeps them as strings
(``0o17``, ``0X1F``, ``0180``, ``1e3``): the loader marks them :class:`PlainNumber` too."""
NUMBER_FIRST = "-+0123456789."
"""The characters a :data:`NUMBER_LIKE` scalar can start with."""

_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]")
_BASE60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?\Z")
_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?\Z")
_SPECIAL = {".inf": math.inf, ".nan": math.nan}


def leading_zero(text: str, hex_first: bool = False) -> str:
    """The message for ``text``, a number with a leading zero; ``hex_first`` for hex-minded keys.

    >>> leading_zero("0180")
    '0180 has a leading zero: write 180'
    >>> leading_zero("0806", hex_first=True)
    '0806 has a leading zero: write 0x0806 for hex, or 806'
    """
    sign = text[0] if text[0] in "+-" else ""
    body = text[len(sign) :]
    rest = body.lstrip("0_")
    decimal = sign + (rest if rest[:1].isdigit() else "0" + rest)
    if hex_first and body.isdigit():
        return f"{text} has a leading zero: write {sign}0x{body} for hex, or {decimal}"
    octal = f", or {sign}0o{rest} for octal" if rest and set(body) <= set("01234567_") else ""
    return f"{text} has a leading zero: write {decimal}{octal}"


def _float(text: str) -> float | None:
    """``text`` as a float by the rules above, or None; leading zeros and base 60 are not checked here."""
    special = _SPECIAL.get(text.lstrip("+-").lower())
    if special is not None:
        return -special if text.startswith("-") else special
    if not _FLOAT.match(text):
        return None
    try:
        return float(text)
    except ValueError:  # misplaced underscores
        return None


def _not_a(text: str, expected: str) -> str:
    """Why ``text`` (no leading zero) is not ``expected``, and what to write instead."""
    if _BASE60.match(text):
        sign = -1 if text.startswith("-") else 1
        value: float = 0
        for part in text.lstrip("+-").replace("_", "").split(":"):
            value = value * 60 + float(part)
        shown = f"{sign * value:g}" if "." in text else str(sign * int(value))
        return f"{text} reads as {shown} in YAML 1.1 (base 60): write {shown}"
    number = _float(text)
    if number is not None and math.isfinite(number) and number == int(number):
        return f"expected {expected}, got {text} (write {int(number)})"
    return f"expected {expected}, got {text}"


def to_int(text: str, expected: str, hex_first: bool = False) -> int:
    """The integer that ``text`` (the text of a plain scalar, or digits) writes.

    Raises
    ------
    ValueError
        ``text`` has a leading zero, is base 60, a fraction or no number;
        the message is ``"expected <expected>, got <text>"`` or says more.
    """
    if _LEADING_ZERO.match(text):
        raise ValueError(leading_zero(text, hex_first))
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(_not_a(text, expected)) from None


def to_float(text: str, expected: str) -> float:
    """The number (possibly not finite) that ``text`` writes: an integer or a fraction.

    Raises
    ------
    ValueError
        As :func:`to_int`.
    """
    if _LEADING_ZERO.match(text):
        raise ValueError(leading_zero(text))
    try:
        whole = int(text, 0)
    except ValueError:
        number = _float(text)
    else:
        try:
            return float(whole)
        except OverflowError:
            return math.copysign(math.inf, whole)
    if number is None:
        raise ValueError(_not_a(text, expected))
    return number


def to_bool(text: str) -> bool:
    """``true`` or ``false`` in any of YAML's spellings (``True``, ``TRUE``...).

    Raises
    ------
    ValueError
        Anything else, ``yes``, ``no``, ``on`` and ``off`` included.
    """
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError(f"expected true or false, got {text}")
