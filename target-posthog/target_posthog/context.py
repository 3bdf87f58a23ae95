"""Device, page, location and session context: Amplitude's fields as PostHog's own properties.

Each helper adds to an event's `properties` and, for the properties PostHog keeps on the
person, to its `$set` (`person`). Where the names come from: PostHog's Amplitude importer
(shared/reference/posthog-capture-api.md, section 4) and posthog-js's property names.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from target_posthog.event_keys import SESSION_MS_MAX, SESSION_MS_MIN, session_uuid
from target_posthog.fields import RAW_PREFIX

# Keys lower-case: Amplitude's SDKs and server-side senders spell these every way ("iOS", "ios").
_DESKTOP_OS = {
    "mac": "Mac OS X",
    "mac os": "Mac OS X",
    "mac os x": "Mac OS X",
    "macos": "Mac OS X",
    "windows": "Windows",
    "linux": "Linux",
    "chrome os": "Chrome OS",
    "chromebook": "Chrome OS",
    "ubuntu": "Linux",
}
_MOBILE_PLATFORMS = frozenset(("ios", "ipados", "android"))
_MOBILE_OS = {
    "ios": "iOS",
    "ipados": "iPadOS",
    "android": "Android",
    "tvos": "tvOS",
    "watchos": "watchOS",
}

# Context fields with one PostHog name whatever the platform: (field, property, also in $set).
_COMMON_CONTEXT: tuple[tuple[str, str, bool], ...] = (
    ("country", "$geoip_country_name", True),
    ("city", "$geoip_city_name", True),
    ("region", "$geoip_subdivision_1_name", True),
    ("location_lat", "$geoip_latitude", False),
    ("location_lng", "$geoip_longitude", False),
    ("ip_address", "$ip", False),
    ("version_name", "$app_version", False),
)
# event_properties key -> (PostHog property, also in $set)
_PAGE_PROPERTIES: dict[str, tuple[str, bool]] = {
    "[Amplitude] Page URL": ("$current_url", True),
    "[Amplitude] Page Domain": ("$host", False),
    "[Amplitude] Page Path": ("$pathname", True),
    "[Amplitude] Page Title": ("title", False),
    "[Amplitude] Viewport Height": ("$viewport_height", False),
    "[Amplitude] Viewport Width": ("$viewport_width", False),
    "referrer": ("$referrer", True),
    "referring_domain": ("$referring_domain", True),
}
_PERSON_CONTEXT = ("$os", "$os_version", "$browser", "$browser_version", "$device_type")

# The record fields this module turns into PostHog properties (not kept as $amplitude_<field>).
CONSUMED_FIELDS = frozenset(
    (
        "os_name",
        "os_version",
        "device_type",
        "device_model",
        "device_manufacturer",
        "device_brand",
        "device_carrier",
        "library",
        "amplitude_id",
        "session_id",
        "device_id",
        *(field for field, _, _ in _COMMON_CONTEXT),
    )
)


def add_page_properties(
    properties: dict[str, Any], person: dict[str, Any], event_properties: dict[str, Any]
) -> None:
    """Amplitude's page/viewport/referrer event properties under PostHog's names."""
    # In the table's order, not a set's: the payload bytes must not vary between processes.
    for field, (name, in_person) in _PAGE_PROPERTIES.items():
        value = event_properties.get(field)
        if value is not None:
            properties[name] = value
            if in_person:
                person[name] = value


def add_context(properties: dict[str, Any], person: dict[str, Any], record: dict[str, Any]) -> None:
    """Location, app version, OS/browser/device, library and amplitude_id."""
    get = record.get
    for field, name, in_person in _COMMON_CONTEXT:
        value = get(field)
        if value is not None and value != "":
            properties[name] = value
            if in_person:
                person[name] = value
    platform = get("platform")
    if platform == "Web" or str(platform or "").lower() == "web":
        _add_web_context(properties, record)
    else:
        _add_app_context(properties, record)
    library = get("library")
    if isinstance(library, str) and library:
        properties.update(_library_properties(library))
    else:
        keep_as_received(properties, "library", library)
    amplitude_id = get("amplitude_id")
    if amplitude_id is not None:
        properties["$amplitude_id"] = amplitude_id
    for name in _PERSON_CONTEXT:
        if name in properties:
            person[name] = properties[name]


def add_device_and_session(
    properties: dict[str, Any], device_id: str | None, session_id: object, scope: str
) -> None:
    """`$device_id` and the session: `$session_id` is a UUIDv7 whose time is the session start,
    scoped to `scope` (the device, else the distinct_id) because Amplitude's session ids are
    only unique per device."""
    if device_id is not None:
        properties["$device_id"] = device_id
        properties[RAW_PREFIX + "device_id"] = device_id
    # Every session id is kept as received (-1, Amplitude's "no session", too; and any value
    # tap-amplitude kept aside, such as "abc" or 1.5): only a start time in epoch ms also
    # becomes PostHog's $session_id.
    keep_as_received(properties, "session_id", session_id)
    if (
        isinstance(session_id, int)
        and not isinstance(session_id, bool)
        and SESSION_MS_MIN <= session_id < SESSION_MS_MAX
    ):
        properties["$session_id"] = session_uuid(session_id, scope)


def keep_as_received(properties: dict[str, Any], field: str, value: object) -> None:
    """A field no PostHog property took, as `$amplitude_<field>` (null and "" carry nothing)."""
    if value is not None and value != "":
        properties[RAW_PREFIX + field] = value


def _add_web_context(properties: dict[str, Any], record: dict[str, Any]) -> None:
    """Amplitude's browser SDK puts the browser in os_name and the OS in device_type."""
    browser, version = record.get("os_name"), record.get("os_version")
    if browser:
        properties["$browser"] = browser
    else:
        keep_as_received(properties, "os_name", browser)
    if version is not None and version != "":
        properties["$browser_version"] = _version_number(version)
    device_type = record.get("device_type") or record.get("device_family")
    if isinstance(device_type, str) and device_type:
        hints = (record.get("device_family"), record.get("device_model"), browser)
        hint = " ".join(value for value in hints if isinstance(value, str)).lower()
        properties.update(_web_os_properties(device_type, hint))
    if not isinstance(record.get("device_type"), str):
        keep_as_received(properties, "device_type", record.get("device_type"))
    for field, name in _WEB_RAW_DEVICE_FIELDS:
        value = record.get(field)
        if value is not None and value != "":
            properties[name] = value


def _version_number(version: object) -> object:
    """A browser's major version as PostHog's number (``"121"`` -> 121) when that is the same
    text; anything else as received (``"007"``, ``"121.0"``, and digits that are not ASCII,
    ``"²"``, which ``int`` refuses)."""
    if isinstance(version, str) and version.isascii() and version.isdigit():
        number = int(version)
        if str(number) == version:
            return number
    return version


_WEB_RAW_DEVICE_FIELDS = tuple(
    (field, RAW_PREFIX + field)
    for field in ("device_model", "device_manufacturer", "device_brand", "device_carrier")
)


@lru_cache(maxsize=1024)
def _web_os_properties(device_type: str, hint: str = "") -> dict[str, str]:
    """$os (PostHog's names) and $device_type (posthog-js's Mobile, Tablet, Desktop) for a web
    event's Amplitude device_type; `hint`: its device_family, device_model and browser
    (os_name), lower case.

    Amplitude's browser SDK names the device there for phones and tablets ("Apple iPhone",
    "Apple iPad", "Samsung Galaxy S21", "Android") and the browser "Mobile Safari" or
    "Chrome Mobile": those are iOS/Android, Mobile or (iPad, "tablet", Galaxy Tab, Kindle)
    Tablet, as posthog-js would report the same browser.
    """
    key = device_type.strip().lower()
    if key in _DESKTOP_OS:
        return {"$os": _DESKTOP_OS[key], "$device_type": "Desktop"}
    text = f"{key} {hint}"
    kind = "Tablet" if any(word in text for word in _TABLET_WORDS) else "Mobile"
    if key in _MOBILE_PLATFORMS:
        return {"$os": _MOBILE_OS[key], "$device_type": kind}
    if any(word in text for word in _IOS_WORDS):
        return {"$os": "iOS", "$device_type": kind}
    if any(word in text for word in _ANDROID_WORDS):
        return {"$os": "Android", "$device_type": kind}
    if "mobile" in hint:  # a mobile browser on a device it cannot name
        return {"$os": device_type, "$device_type": kind}
    return {"$os": device_type}


_TABLET_WORDS = ("ipad", "tablet", "galaxy tab", "kindle")
_IOS_WORDS = ("iphone", "ipod", "ipad", "mobile safari")
_ANDROID_WORDS = (
    "android",
    "samsung",
    "galaxy",
    "pixel",
    "huawei",
    "xiaomi",
    "redmi",
    "oneplus",
    "motorola",
    "oppo",
    "vivo",
    "nokia",
)


@lru_cache(maxsize=1024)
def _library_properties(library: str) -> dict[str, str]:
    """`amplitude-ts/2.7.4` -> $lib and $lib_version."""
    lib, _, version = library.partition("/")
    return {"$lib": lib, "$lib_version": version} if version else {"$lib": lib}


def _add_app_context(properties: dict[str, Any], record: dict[str, Any]) -> None:
    os_name = record.get("os_name")
    if isinstance(os_name, str) and os_name:
        properties["$os"] = _MOBILE_OS.get(os_name.lower(), os_name)
    else:  # some senders name the OS only in device_type or platform ("iOS", "android")
        keep_as_received(properties, "os_name", os_name)
        for field in ("device_type", "platform"):
            named = record.get(field)
            if isinstance(named, str) and named.strip().lower() in _MOBILE_OS:
                properties["$os"] = _MOBILE_OS[named.strip().lower()]
                break
    version = record.get("os_version")
    if version is not None and version != "":
        properties["$os_version"] = version
    model = record.get("device_model")
    if model:
        properties["$device_model"] = model
    else:
        keep_as_received(properties, "device_model", model)
    manufacturer, brand = record.get("device_manufacturer"), record.get("device_brand")
    maker = manufacturer or brand
    if maker:
        properties["$device_manufacturer"] = maker
    for field, value in (("device_manufacturer", manufacturer), ("device_brand", brand)):
        if value != maker:  # a brand other than the manufacturer, a 0, a false
            keep_as_received(properties, field, value)
    carrier = record.get("device_carrier")
    if carrier:
        properties["$network_carrier"] = carrier
    else:
        keep_as_received(properties, "device_carrier", carrier)
    device_type = record.get("device_type")
    platform = record.get("platform")
    kind = _app_device_type(
        platform if isinstance(platform, str) else None,
        device_type if isinstance(device_type, str) else None,
        os_name if isinstance(os_name, str) else None,
    )
    if kind == "Mobile":
        hint = f"{record.get('device_family')} {model} {os_name}".lower()
        properties["$device_type"] = "Tablet" if "ipad" in hint or "tablet" in hint else "Mobile"
    elif kind is not None:
        properties["$device_type"] = kind
    if device_type is not None and device_type != "":
        properties[RAW_PREFIX + "device_type"] = device_type


@lru_cache(maxsize=1024)
def _app_device_type(
    platform: str | None, device_type: str | None, os_name: str | None
) -> str | None:
    """Mobile or Desktop from platform, device_type or os_name, in any case ("iOS", "ios").

    PostHog's importer sets $device_type only for device_type Windows/Linux (Desktop) and
    iOS/Android (Mobile), spelled exactly so; any spelling of either counts here.
    """
    for value in (platform, device_type, os_name):
        key = (value or "").strip().lower()
        if key in _MOBILE_PLATFORMS:
            return "Mobile"
        if key in _DESKTOP_OS:
            return "Desktop"
    return None
