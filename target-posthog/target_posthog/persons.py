"""Person properties: Amplitude's `user_properties` as PostHog's `$set` and `$set_once`."""

from __future__ import annotations

from typing import Any

from target_posthog.fields import NameCache

PERSON_UPDATE = "$set"  # the event Amplitude's `$identify` rows become


def initial_values(user_properties: dict[str, Any]) -> dict[str, Any]:
    """`initial_*` user properties as `$initial_*` (for $set_once); `EMPTY` and null left out."""
    names = _INITIAL_NAMES.names
    try:
        return {
            once: value
            for key, value in user_properties.items()
            if (once := names[key]) and value != "EMPTY" and value is not None
        }
    except KeyError:
        name = _INITIAL_NAMES.learn
        return {
            once: value
            for key, value in user_properties.items()
            if (once := name(key)) and value != "EMPTY" and value is not None
        }


_INITIAL_NAMES = NameCache(lambda key: f"$initial_{key[8:]}" if key.startswith("initial_") else "")
