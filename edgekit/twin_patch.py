"""How a twin patch applies to a document, as IoT Hub applies it: objects merge, null removes a key;
and the smallest patch that turns one document into another."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_patch(document: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A twin patch applied to a document: objects merge, null removes a key."""
    merged = dict(document)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping):  # into what is there, or into nothing: nulls inside remove too
            current = merged.get(key)
            merged[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            merged[key] = value
    return merged


def diff_patch(held: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The patch that turns `held` (a document as the twin holds it) into `wanted`: only what changed, null for
    what went (a null in `wanted` means absent, as in a patch). merge_patch(held, result) == merge_patch({}, wanted).

    A report then carries what changed (a counters update is a few hundred bytes, not the whole document), and
    the $metadata timestamps IoT Hub keeps per key keep saying when each value last changed."""
    patch: dict[str, Any] = {}
    for key in held.keys() - wanted.keys():
        patch[key] = None
    for key, value in wanted.items():
        current = held.get(key)
        if value is None:
            if key in held:
                patch[key] = None
        elif isinstance(value, Mapping):
            if isinstance(current, Mapping):
                inner = diff_patch(current, value)
                if inner:
                    patch[key] = inner
            else:
                patch[key] = merge_patch({}, value)  # nulls inside mean absent: leave them out
        elif key not in held or current != value or type(current) is not type(value):
            patch[key] = value
    return patch
