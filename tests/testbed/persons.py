"""Persons and groups as PostHog's ingestion builds them from accepted events.

The rules (shared/reference/posthog-capture-api.md sections 3 and 4, from PostHog's
`person-merge-service.ts`, `person-update.ts` and `group-update.ts`):

- every event's distinct_id belongs to a person, created on first sight (unless the event says
  `$process_person_profile: false`; a personless merge or `$groupidentify` is dropped with a
  warning);
- `$create_alias` / `$merge_dangerously` merge the person of `properties.alias` into the
  person of `distinct_id`; `$identify` merges `properties.$anon_distinct_id`'s. Equal ids do
  nothing; an illegal id on either side is refused (`cannot_merge_with_illegal_distinct_id`);
  when both persons exist and the other one is already identified, `$identify` and
  `$create_alias` are refused (`cannot_merge_already_identified`), `$merge_dangerously` is not.
  A merge marks the result identified; on conflicting properties the target's value stays;
- then the event's `$set` is applied, `$set_once` only for absent keys, `$unset` removes, in
  the order events are ingested (not by timestamp); an update that would leave more than
  about 640 KB of properties is refused whole (`person_properties_size_violation`);
- `$groupidentify` merges `$group_set` into the group (`$group_type`, `$group_key`), key by key,
  in ingestion order; there is no set-once for groups.

Cheap per event: an event's properties are decoded only into the few fields these rules read.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import orjson
from target_posthog.identity import (
    POSTHOG_ILLEGAL_CASE_INSENSITIVE,
    POSTHOG_ILLEGAL_CASE_SENSITIVE,
)

MERGE_EVENTS = frozenset(("$create_alias", "$identify", "$merge_dangerously"))
# PostHog refuses a person update whose properties would exceed about 640 KB
# (`check_properties_size`; warning `person_properties_size_violation`; the reference, section 3).
PERSON_PROPERTIES_LIMIT = 640 * 1024
# PostHog's lists, as the reference records them (one place in the project: the target's
# identity module; tests/test_testbed.py checks the stand-in's refusals with literal ids).
_ILLEGAL_CASE_INSENSITIVE = frozenset(POSTHOG_ILLEGAL_CASE_INSENSITIVE)
_ILLEGAL_CASE_SENSITIVE = frozenset(POSTHOG_ILLEGAL_CASE_SENSITIVE)


def is_illegal_id(distinct_id: str) -> bool:
    """PostHog's refusal to merge through an id (quotes and surrounding whitespace ignored)."""
    stripped = distinct_id.strip().strip("\"'").strip()
    return (
        not stripped
        or stripped in _ILLEGAL_CASE_SENSITIVE
        or stripped.lower() in _ILLEGAL_CASE_INSENSITIVE
    )


class _Rules(msgspec.Struct, gc=False):
    """The properties PostHog's person and group processing reads; the rest is skipped."""

    set: Any = msgspec.field(default=None, name="$set")
    set_once: Any = msgspec.field(default=None, name="$set_once")
    unset: Any = msgspec.field(default=None, name="$unset")
    alias: Any = None
    anon_distinct_id: Any = msgspec.field(default=None, name="$anon_distinct_id")
    group_type: Any = msgspec.field(default=None, name="$group_type")
    group_key: Any = msgspec.field(default=None, name="$group_key")
    group_set: Any = msgspec.field(default=None, name="$group_set")
    process_person_profile: Any = msgspec.field(default=None, name="$process_person_profile")


_decode_rules = msgspec.json.Decoder(_Rules).decode
_EMPTY = _Rules()
_decode_any = msgspec.json.decode


class EventFields(Protocol):
    """What the stand-in decoded of an event (raw JSON of its properties and top-level sets)."""

    @property
    def properties(self) -> msgspec.Raw: ...
    @property
    def set(self) -> msgspec.Raw: ...
    @property
    def set_once(self) -> msgspec.Raw: ...


@dataclass(frozen=True)
class PersonView:
    """A person as a test reads it."""

    distinct_ids: frozenset[str]
    properties: dict[str, Any]
    is_identified: bool


@dataclass
class _Person:
    id: int
    distinct_ids: set[str]
    properties: dict[str, Any]
    is_identified: bool = False


class PersonsModel:
    """PostHog's persons and groups; `ingest` is called once per accepted event, in order.

    Not thread-safe on its own: the stand-in calls it under its lock.
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._person_of: dict[str, _Person] = {}
        self._groups: dict[tuple[str, str], dict[str, Any]] = {}
        self.warnings: list[tuple[str, str]] = []  # (ingestion warning, detail)

    # --- test controls and observations --------------------------------------------------

    def add_person(self, distinct_ids: list[str], properties: dict[str, Any]) -> None:
        """A person that exists before the migration (a project with live data)."""
        person = _Person(next(self._ids), set(distinct_ids), dict(properties), True)
        for distinct_id in distinct_ids:
            self._person_of[distinct_id] = person

    def add_group(self, group_type: str, group_key: str, properties: dict[str, Any]) -> None:
        self._groups[(group_type, group_key)] = dict(properties)

    def persons(self) -> list[PersonView]:
        unique = {id(person): person for person in self._person_of.values()}
        return [_view(person) for person in unique.values()]

    def person(self, distinct_id: str) -> PersonView | None:
        person = self._person_of.get(distinct_id)
        return None if person is None else _view(person)

    def groups(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {key: dict(values) for key, values in self._groups.items()}

    # --- ingestion -------------------------------------------------------------------------

    def ingest(self, name: object, distinct_id: object, fields: EventFields) -> None:
        """Apply one accepted event's person and group effects."""
        distinct_id = str(distinct_id)
        raw = fields.properties
        try:
            rules = _decode_rules(raw) if len(raw) > 4 else _EMPTY  # b"null", {}: nothing
        except msgspec.ValidationError:  # properties is not an object
            rules = _EMPTY
        if rules.process_person_profile is False:
            if name in MERGE_EVENTS or name == "$groupidentify":  # PostHog drops these
                self.warnings.append(
                    ("invalid_event_when_process_person_profile_is_false", str(name))
                )
            return
        if name in MERGE_EVENTS:
            other = rules.anon_distinct_id if name == "$identify" else rules.alias
            if other is not None:
                self._merge(str(name), distinct_id, str(other))
        person = self._person_of.get(distinct_id)
        if person is None:
            person = self._person_of[distinct_id] = _Person(next(self._ids), {distinct_id}, {})
        top_set, top_once = fields.set, fields.set_once
        before = dict(person.properties)
        for values in (rules.set, _decode_any(top_set) if len(top_set) > 4 else None):
            if isinstance(values, dict):
                person.properties.update(values)
        for values in (rules.set_once, _decode_any(top_once) if len(top_once) > 4 else None):
            if isinstance(values, dict):
                for key, value in values.items():
                    person.properties.setdefault(key, value)
        if isinstance(rules.unset, list):
            for key in rules.unset:
                person.properties.pop(key, None)
        if person.properties != before and _size(person.properties) > PERSON_PROPERTIES_LIMIT:
            person.properties = before  # the whole update refused
            self.warnings.append(("person_properties_size_violation", distinct_id))
        if name == "$groupidentify":
            self._group_identify(rules)

    def _merge(self, name: str, target_id: str, other_id: str) -> None:
        if target_id == other_id:
            return
        if is_illegal_id(target_id) or is_illegal_id(other_id):
            self.warnings.append(
                ("cannot_merge_with_illegal_distinct_id", f"{name} {target_id} <- {other_id}")
            )
            return
        target = self._person_of.get(target_id)
        other = self._person_of.get(other_id)
        if target is None and other is None:
            person = _Person(next(self._ids), {target_id, other_id}, {}, True)
            self._person_of[target_id] = self._person_of[other_id] = person
        elif target is None:
            assert other is not None
            other.distinct_ids.add(target_id)
            other.is_identified = True
            self._person_of[target_id] = other
        elif other is None:
            target.distinct_ids.add(other_id)
            target.is_identified = True
            self._person_of[other_id] = target
        elif target is not other:
            if other.is_identified and name != "$merge_dangerously":
                self.warnings.append(
                    ("cannot_merge_already_identified", f"{name} {target_id} <- {other_id}")
                )
                return
            target.properties = {**other.properties, **target.properties}  # target wins
            target.distinct_ids |= other.distinct_ids
            target.is_identified = True
            for moved in other.distinct_ids:
                self._person_of[moved] = target

    def _group_identify(self, rules: _Rules) -> None:
        if rules.group_type is None or rules.group_key is None:
            self.warnings.append(("invalid_group_identify", "no $group_type or $group_key"))
            return
        if rules.group_set is not None and not isinstance(rules.group_set, dict):
            self.warnings.append(("invalid_group_set", repr(rules.group_set)[:100]))
            return
        group = self._groups.setdefault((str(rules.group_type), str(rules.group_key)), {})
        group.update(rules.group_set or {})


def _view(person: _Person) -> PersonView:
    return PersonView(frozenset(person.distinct_ids), dict(person.properties), person.is_identified)


def _size(properties: dict[str, Any]) -> int:
    return len(orjson.dumps(properties, default=str))
