"""How a twin patch applies to a document, as IoT Hub applies it: objects merge, null removes a key."""

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
