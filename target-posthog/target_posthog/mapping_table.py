"""The mapping, described: one line per Amplitude field, where it goes in PostHog and why.

`MAPPING_TABLE` is the single description of what mapping.py does; target-posthog's README
holds the table `mapping_table_markdown` renders (tests/test_target_mapping.py checks that it
is the current one, and that every field tap-amplitude adds is named).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of the mapping: where an Amplitude field goes and why."""

    amplitude: str
    posthog: str
    why: str = ""  # set where we differ from PostHog's own Amplitude importer


MAPPING_TABLE: tuple[Rule, ...] = (
    Rule(
        "event_type",
        "event",
        "`[Amplitude] Page Viewed` -> `$pageview`, `$identify` -> `$set`, `$groupidentify` -> "
        "`$groupidentify` (their properties travel in the person/group updates; a row with "
        "no user_id or device_id: `$amplitude_$groupidentify`, personless), "
        "`$create_alias`/`$merge_dangerously` -> `$amplitude_$create_alias`/"
        "`$amplitude_$merge_dangerously` (PostHog would merge two persons on them); others "
        "unchanged. The importer passes `$identify`/`$groupidentify` through as plain events "
        "and drops `session_start` (newer versions reportedly `session_end` too); we keep "
        "every event, so PostHog holds "
        "the export's count (what a verification compares) and nothing is lost (filter them "
        "out in PostHog if unwanted). The original name stays in `$amplitude_event_type` when "
        "renamed. `[Amplitude] Element Clicked/Changed` keep their names: the importer's "
        "`$autocapture` without PostHog's `$elements` data cannot be used in PostHog",
    ),
    Rule(
        "event_time, else client_event_time, else server_received_time",
        "timestamp (+ `$amplitude_timestamp_from` naming the field when not event_time, and "
        "an unreadable event_time kept as exported in `$amplitude_event_time`)",
        "RFC 3339 UTC, read by tap-amplitude's rule: ISO 8601 date, `T` or space, "
        "`HH:MM:SS`, optional fraction and offset (none: UTC); a date alone "
        "(`2024-03-01`) names no instant and is no time. A time more than 23 h after the "
        "run's start (PostHog replaces it with the time of ingestion: `event_timestamp_in_"
        "future`) or before 1970 (a device clock never set; PostHog keeps years 0-9999) "
        "counts as none: the next field is used (counted in the run's summary). None of the "
        "three usable -> dead-letter; the importer falls back the same way but then stamps "
        "the import time, which puts history on the wrong day",
    ),
    Rule(
        "uuid",
        "uuid (+ `$amplitude_uuid_derived: true` when derived)",
        'Amplitude\'s uuid when valid (not the nil or max UUID, placeholders for "no id"; '
        "tap-amplitude derives one for a line without: from "
        "`$insert_id`, else from the line's exact bytes), else uuid5 of `$insert_id` (or of "
        "the whole record): deterministic, so a re-send dedupes; the importer uses a random "
        "UUIDv7",
    ),
    Rule(
        "user_id, else device_id",
        "distinct_id",
        "placeholder ids (`null`, `undefined`, `0`, ... see 'Identity' below) count as absent; "
        "no usable id at all -> dead-letter; the importer invents a random person. An id "
        "longer than 183 characters or holding a NUL (PostHog's capture cuts a distinct_id to "
        "200, 183 and a colliding id's `amplitude_device:` prefix, and replaces NUL with "
        "U+FFFD, merging ids that differ only there) is sent as `<its first "
        "100 characters, NUL as U+FFFD>#repaired-<SHA-256 of its UTF-8, 64 hex digits>`, the "
        "same on every run (counted in the run's summary; the original in "
        "`$amplitude_user_id`/`$amplitude_device_id`)",
    ),
    Rule(
        "event_properties",
        "properties (all keys, unchanged; `$set`, `$set_once`, `$unset`, "
        "`$process_person_profile`, `$groups`, `$cookieless_mode` renamed `$amplitude_$set`, "
        "`$amplitude_$set_once`, ...)",
        "PostHog obeys those on any event instead of storing them: person updates applied in "
        "upload order and over live values even with `existing_properties: keep`, an event "
        "made personless (or its merge dropped), groups the record never named, a cookieless "
        "distinct_id; the importer passes them through. Only the target's person updates "
        "change a person. A property already named like the renamed one (`$amplitude_$set` "
        "beside `$set`) goes to `$amplitude_clashing_event_properties` (user_properties: the "
        "person's `$amplitude_clashing_user_properties`), counted",
    ),
    Rule(
        "an event property named like a property this table maps an export field to "
        "(`$current_url`, `$lib`, `$ip`, `$session_id`, `analytics_source`, "
        "`$amplitude_user_id`, ...) with another value",
        "`$amplitude_clashing_event_properties` {name: value} (counted in the run's summary; "
        "the export's own field keeps the name)",
        "the importer copies event_properties first and writes its mapped fields over them: "
        "the event property's value is lost without a word. Nothing is overwritten here, "
        "either way",
    ),
    Rule(
        "user_properties (+ location, OS, browser, device type, page context)",
        "person properties: one `$set` event per person: the newest `user_properties` by event "
        "time (Amplitude's whole snapshot of the user), properties it no longer has in `$unset`",
        "the importer drops custom user properties; `$set` on each event would be applied in "
        "upload order, so a late upload would leave old values (see 'Persons and groups')",
    ),
    Rule(
        "user_properties.initial_*",
        "person properties `initial_*` and `$initial_*`, each from the earliest event",
        "first-touch values; every `initial_*` (the importer: utm/referrer only, as "
        "`$initial_*`); the `$initial_*` copy skips `EMPTY` as the importer does, the plain "
        "name keeps what Amplitude shows",
    ),
    Rule(
        "[Amplitude] Page URL / Domain / Path / Title", "$current_url / $host / $pathname / title"
    ),
    Rule("[Amplitude] Viewport Height / Width", "$viewport_height / $viewport_width"),
    Rule("event_properties.referrer / referring_domain", "$referrer / $referring_domain"),
    Rule(
        "os_name, os_version (platform Web)",
        "$browser, $browser_version (also on the person)",
        "Amplitude's browser SDK reports the browser there",
    ),
    Rule(
        "device_type (platform Web)",
        "$os (+ $device_type Desktop/Mobile/Tablet)",
        "`Mac` normalised to PostHog's `Mac OS X`; any case (`ios`, `WINDOWS`); phones and "
        "tablets as the browser SDK names them (`Apple iPhone`, `Apple iPad`, `Samsung Galaxy "
        "S21`, browser `Mobile Safari`/`Chrome Mobile`) -> iOS/Android, Mobile/Tablet",
    ),
    Rule(
        "os_name (else a device_type or platform naming iOS/Android), os_version (other platforms)",
        "$os, $os_version (also on the person)",
        "the importer maps os_name to $browser for every platform, which labels iOS/Android "
        "as browsers and phone models as operating systems",
    ),
    Rule(
        "device_model, device_manufacturer (or device_brand), device_carrier (apps)",
        "$device_model, $device_manufacturer, $network_carrier (+ $device_type "
        "Mobile/Tablet/Desktop)",
        "not mapped by the importer, which sets $device_type only for a device_type spelled "
        "exactly iOS/Android/Windows/Linux; here platform, device_type or os_name in any case",
    ),
    Rule(
        "country / region / city",
        "$geoip_country_name / $geoip_subdivision_1_name / $geoip_city_name (also in $set)",
    ),
    Rule(
        "location_lat / location_lng",
        "$geoip_latitude / $geoip_longitude",
        "not mapped by the importer",
    ),
    Rule(
        "ip_address",
        "$ip (with `$geoip_disable: true`)",
        "the importer sets no `$geoip_disable`: PostHog geolocates the IP again at import "
        "(with today's database; `127.0.0.1` when the export has none) and writes the result "
        "over the person's location. Amplitude's own location of the event (country, city, "
        "region) is mapped instead, as posthog-python does by default",
    ),
    Rule("version_name", "$app_version", "not mapped by the importer"),
    Rule("library (`name/version`)", "$lib, $lib_version", "not mapped by the importer"),
    Rule(
        "session_id",
        "$amplitude_session_id (any value, as received: -1, or one tap-amplitude kept aside) "
        "and $session_id (when it is a session start in epoch ms)",
        "$session_id is a deterministic UUIDv7 whose time is the session start, so PostHog's "
        "sessions and web analytics work; the importer sets no $session_id (PostHog issue "
        "48172, open)",
    ),
    Rule("device_id", "$amplitude_device_id and $device_id"),
    Rule(
        "groups",
        "$groups {type: first key} (+ all keys in $amplitude_groups)",
        "the importer keeps only the first key",
    ),
    Rule(
        "group_properties (any event, and `$groupidentify` rows)",
        "group properties: one `$groupidentify` per group whose values changed, each property "
        "its newest value by event time",
        "the importer sends one on every change, in upload order",
    ),
    Rule(
        "amplitude_id",
        "$amplitude_id",
        "the importer drops it; it is Amplitude's merged-user id, which ties our persons back "
        "to Amplitude's (and lets a verification compare user counts)",
    ),
    Rule(
        "a context field above whose value no PostHog property takes (a `library` that is no "
        "text, a `device_brand` beside `device_manufacturer`, an `os_name` of 0, ...)",
        "`$amplitude_<field>`, as received",
        "nothing is dropped silently",
    ),
    Rule(
        "additional_properties (tap-amplitude: the fields its catalog does not name, and "
        "values it could not convert exactly to their field's type)",
        "put back in place before mapping: each field by its rule in this table, else "
        "`$amplitude_<field>`",
        "the record as exported is mapped, whatever the tap's catalog holds",
    ),
    Rule(
        "tap-amplitude's bookkeeping: `repairs`, `uuid_derived`, `uuid_original`, and in "
        "additional_properties `as_exported`, `duplicate_keys`, `reserved_names`",
        "`$amplitude_repairs`, `$amplitude_uuid_derived`, `$amplitude_uuid_original`, "
        "`$amplitude_as_exported`, `$amplitude_duplicate_keys`, `$amplitude_reserved_names`, "
        "as received",
        "sent on purpose: in PostHog they prove what was repaired (each repair named), derived "
        "(the original uuid: unusable, or in another spelling) or converted (each value as "
        "exported, the earlier values of a key given twice, export fields named like the tap's "
        "own); `repairs` also names "
        "target-posthog's own repairs of its input. Its `number_texts` (the text of each number "
        "a double would change, for targets that store doubles) is not sent: the payload "
        "holds those numbers as exported",
    ),
    Rule(
        "any other field (user_id, event_id, $insert_id, times, data, plan, ...)",
        "`$amplitude_<field>` (leading `$` dropped)",
        "the importer drops them; null and empty values are left out",
    ),
    Rule(
        "a field whose `$amplitude_<field>` name the target's own property holds "
        "(`timestamp_from`, `clashing_event_properties`, `$event_type`, ...) or a field "
        "spelled both with and without `$` (`insert_id` beside `$insert_id`)",
        "`$amplitude_clashing_fields` {field as exported: value} (counted in the run's "
        "summary); the target's own property, and Amplitude's spelling (`$insert_id`, "
        "`$schema`, else the one without `$`), keep the name",
        "nothing is overwritten or lost, whatever the fields' order",
    ),
    Rule("(every event)", "$geoip_disable: true, analytics_source: amplitude"),
    Rule(
        "(device_id, user_id) pair, first time seen",
        "$create_alias (distinct_id=user_id, "
        "alias=device_id), once per pair, at the pair's first event",
        "the importer sends $identify; see 'Aliases' below",
    ),
)


def mapping_table_markdown() -> str:
    """The README's mapping table."""
    lines = ["| Amplitude | PostHog | Differs from PostHog's importer because |", "|---|---|---|"]
    lines += [f"| {rule.amplitude} | {rule.posthog} | {rule.why} |" for rule in MAPPING_TABLE]
    return "\n".join(lines)
