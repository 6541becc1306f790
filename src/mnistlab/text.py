"""Words for messages: a count with its noun in the right number, `plural(1, "epoch")` is
"1 epoch" and `plural(2, "epoch")` "2 epochs", so that no message says "1 epochs"."""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`count` with thousands separators, then `noun`, or `nouns` (default: `noun` + "s")
    unless the count is 1: `plural(3, "class", "classes")`."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"
