"""Deterministic, streaming generator of realistic Amplitude export records.

`generate_events(spec)` yields one raw export record (a dict, as one JSON line of an export)
at a time, hour by hour in server_upload_time order, so millions of events never sit in memory.
What is held is the user population (built lazily, bounded by the number of users) and a little
per-device state (anonymous-or-logged-in, session), which is what makes journeys realistic.

Determinism: user and device identities depend only on `seed` (so two specs with the same seed
share one population, like new hours of the same project), while the event stream depends on
the whole spec (so two different specs never repeat each other's uuids).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from tests.testbed import vocab

US_PER_HOUR = 3_600_000_000
_US_PER_MINUTE = 60_000_000
_SESSION_GAP_US = 30 * _US_PER_MINUTE
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE_SECOND = [f"{m:02d}:{s:02d}" for m in range(60) for s in range(60)]  # by second of hour

T = TypeVar("T")


def parse_utc(value: object) -> datetime | None:
    """An ISO time as an aware UTC datetime (no zone: UTC, as Amplitude writes); None if it
    is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def as_utc_hour(value: datetime) -> datetime:
    """A whole UTC hour as an aware datetime (naive input is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    if value.minute or value.second or value.microsecond:
        raise ValueError(f"{value.isoformat()} is not a whole hour")
    return value


def hour_us(hour: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (hour - EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class ExportSpec:
    """What to generate: `events` records over `hours` whole hours from `start` (UTC)."""

    start: datetime
    hours: int
    events: int
    seed: int = 7
    project_id: int = 187520
    users: int | None = None
    invalid_fraction: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc_hour(self.start))
        if self.hours < 1:
            raise ValueError("hours must be >= 1")
        if self.events < 0:
            raise ValueError("events must be >= 0")
        if not 0.0 <= self.invalid_fraction <= 1.0:
            raise ValueError("invalid_fraction must be within [0, 1]")

    @property
    def end(self) -> datetime:
        """The last hour of the spec (inclusive)."""
        return self.start + timedelta(hours=self.hours - 1)

    @property
    def user_count(self) -> int:
        # About 25 events per user, bounded so the population stays small at millions of events.
        return self.users if self.users else max(8, min(50_000, self.events // 25))


class TimeFormatter:
    """Formats epoch microseconds as Amplitude does (`YYYY-MM-DD HH:MM:SS.ffffff`), fast.

    strftime per field per event would dominate the generator's time; the hour prefix is cached.
    """

    def __init__(self) -> None:
        self._prefixes: dict[int, str] = {}

    def __call__(self, us: int) -> str:
        hour, rest = divmod(us, US_PER_HOUR)
        prefix = self._prefixes.get(hour)
        if prefix is None:
            prefix = (EPOCH + timedelta(hours=hour)).strftime("%Y-%m-%d %H:")
            self._prefixes[hour] = prefix
        second, micro = divmod(rest, 1_000_000)
        return f"{prefix}{_MINUTE_SECOND[second]}.{micro:06d}"


def uuid4_from_bits(bits: int) -> str:
    """A valid version-4 UUID string from 128 random bits (deterministic given the bits)."""
    bits = (bits & ~(0xF << 76)) | (0x4 << 76)
    bits = (bits & ~(0x3 << 62)) | (0x2 << 62)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _expand(items: Sequence[T], weights: Sequence[int]) -> list[T]:
    """A list where each item appears `weight` times: weighted choice by one index."""
    return [item for item, weight in zip(items, weights, strict=True) for _ in range(weight)]


_PROFILES = _expand(vocab.DEVICE_PROFILES, vocab.DEVICE_PROFILE_WEIGHTS)
_PLACES = _expand(vocab.PLACES, vocab.PLACE_WEIGHTS)
_PAGES = _expand(vocab.PAGES, vocab.PAGE_WEIGHTS)
_APP_EVENTS = _expand([name for name, _ in vocab.APP_EVENTS], [w for _, w in vocab.APP_EVENTS])


@dataclass(slots=True)
class Device:
    device_id: str
    amplitude_id: int
    context: dict[str, Any]  # platform/os/device/geo/ip/library fields, merged into each event
    is_web: bool
    skew_us: int  # the device clock's offset, which makes client_* times differ


@dataclass(slots=True)
class User:
    index: int
    user_id: str | None  # None: a visitor who never logs in
    amplitude_id: int
    devices: list[Device]
    properties: dict[str, Any]  # user_properties once identified
    anonymous_properties: dict[str, Any]  # what the SDK knows before login (attribution)
    company: str | None


class Population:
    """Users and their devices, built lazily and deterministically from the seed alone."""

    def __init__(self, seed: int, size: int) -> None:
        self.seed = seed
        self.size = size
        self._users: dict[int, User] = {}
        self._devices: dict[tuple[int, int], Device] = {}

    def user(self, index: int) -> User:
        user = self._users.get(index)
        if user is None:
            user = self._users[index] = self._build_user(index)
        return user

    def _build_user(self, index: int) -> User:
        rng = random.Random(f"{self.seed}/user/{index}")
        user_id = _make_user_id(rng, index)
        devices = [self.device(index, k) for k in range(rng.choice((1, 1, 1, 2, 2, 3)))]
        # A few households share a device with the next user (a family tablet).
        if rng.random() < 0.04 and index + 1 < self.size:
            devices.append(self.device(index + 1, 0))
        referrer, referring_domain = rng.choice(vocab.REFERRERS)
        attribution = {
            "initial_utm_source": rng.choice(vocab.UTM_SOURCES),
            "initial_utm_medium": rng.choice(vocab.UTM_MEDIUMS),
            "initial_utm_campaign": rng.choice(vocab.UTM_CAMPAIGNS),
            "initial_referrer": referrer or "EMPTY",
            "initial_referring_domain": referring_domain or "EMPTY",
        }
        company = rng.choice(vocab.COMPANIES) if rng.random() < 0.5 else None
        properties = {
            **attribution,
            "first_name": rng.choice(vocab.FIRST_NAMES),
            "plan": rng.choice(vocab.PLANS),
            "age": rng.randint(18, 80),
            "is_paying": rng.random() < 0.2,
            "beta_features": rng.sample(["dark-mode", "新機能", "ai-assist", "éditeur"], 2),
        }
        if company:
            properties["company"] = company
        return User(
            index=index,
            user_id=user_id,
            amplitude_id=rng.randrange(10**11, 10**12),
            devices=devices,
            properties=properties,
            anonymous_properties=attribution,
            company=company,
        )

    def device(self, user_index: int, k: int) -> Device:
        key = (user_index, k)
        device = self._devices.get(key)
        if device is None:
            device = self._devices[key] = self._build_device(user_index, k)
        return device

    def _build_device(self, user_index: int, k: int) -> Device:
        rng = random.Random(f"{self.seed}/device/{user_index}/{k}")
        profile = rng.choice(_PROFILES)
        country, region, city, dma, lat, lng, language = rng.choice(_PLACES)
        is_web = profile["platform"] == "Web"
        device_id = _make_device_id(rng, profile["platform"], user_index, k)
        version = (
            None if is_web else f"{rng.randint(2, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
        )
        octets = (
            rng.randint(11, 223),
            rng.randint(0, 255),
            rng.randint(0, 255),
            rng.randint(1, 254),
        )
        ip = ".".join(map(str, octets))
        context = {
            **profile,
            "device_id": device_id,
            "country": country,
            "region": region,
            "city": city,
            "dma": dma,
            "language": language,
            "ip_address": ip,
            # Browsers do not report coordinates; mobile SDKs do (jittered around the city).
            "location_lat": None if is_web else round(lat + rng.uniform(-0.05, 0.05), 6),
            "location_lng": None if is_web else round(lng + rng.uniform(-0.05, 0.05), 6),
            "version_name": version,
            "start_version": version,
            "idfa": None,
            "adid": None,
        }
        skew = 0 if rng.random() < 0.7 else rng.randint(-90_000_000, 90_000_000)
        return Device(device_id, rng.randrange(10**11, 10**12), context, is_web, skew)


def _make_user_id(rng: random.Random, index: int) -> str | None:
    r = rng.random()
    if r < 0.25:
        return None
    if r < 0.65:
        return f"u_{rng.getrandbits(40):010x}"
    if r < 0.85:
        return f"{rng.choice(vocab.FIRST_NAMES).lower()}.{index}@example.com"
    if r < 0.93:
        return f"1{index:07d}"
    if r < 0.97:
        return f"用户_{index}"
    return f"🦊-fox-{index}"


def _make_device_id(rng: random.Random, platform: str, user_index: int, k: int) -> str:
    if rng.random() < 0.02:
        return rng.choice(("appareil-é", "设备", "gerät-ü")) + f"-{user_index}-{k}"
    uid = uuid4_from_bits(rng.getrandbits(128))
    if platform == "iOS":
        return uid.upper()  # IDFV
    if platform == "Android":
        return uid + "R"  # the Android SDK's random device id
    return uid


@dataclass(slots=True)
class _DeviceState:
    """Per-device journey state during one generation run."""

    anonymous_left: int  # events still to come before the user logs in on this device
    current_user: int = -1
    session_id: int = -1
    last_us: int = -1
    event_counter: int = 0


@dataclass
class _Run:
    spec: ExportSpec
    rng: random.Random
    population: Population
    fmt: TimeFormatter = field(default_factory=TimeFormatter)
    devices: dict[str, _DeviceState] = field(default_factory=dict)
    signed_up: set[int] = field(default_factory=set)
    user_first_us: dict[int, int] = field(default_factory=dict)


def _hour_weight(hour: datetime) -> float:
    """Day/night and weekday pattern: busiest mid-afternoon UTC, quietest around 03:00."""
    daily = 0.15 + 0.85 * (0.5 - 0.5 * math.cos(2 * math.pi * (hour.hour - 3) / 24))
    return daily * (0.7 if hour.weekday() >= 5 else 1.0)


def hour_counts(spec: ExportSpec, rng: random.Random) -> list[int]:
    """How many events each hour of the spec gets: uneven, but every hour some if possible."""
    if spec.events < spec.hours:
        counts = [0] * spec.hours
        for h in rng.sample(range(spec.hours), spec.events):
            counts[h] = 1
        return counts
    weights = [
        _hour_weight(spec.start + timedelta(hours=h)) * rng.uniform(0.75, 1.25)
        for h in range(spec.hours)
    ]
    total_weight = sum(weights)
    rest = spec.events - spec.hours
    shares = [rest * w / total_weight for w in weights]
    counts = [1 + int(s) for s in shares]
    leftover = spec.events - sum(counts)
    by_fraction = sorted(range(spec.hours), key=lambda h: (int(shares[h]) - shares[h], h))
    for h in by_fraction[:leftover]:
        counts[h] += 1
    return counts


def generate_events(spec: ExportSpec) -> Iterator[dict[str, Any]]:
    """Yield the spec's raw Amplitude export records, hour by hour (server_upload_time order)."""
    stream_key = (
        f"{spec.seed}/{spec.project_id}/{spec.start.isoformat()}/{spec.hours}/{spec.events}/"
        f"{spec.users}/{spec.invalid_fraction}"
    )
    run = _Run(spec, random.Random(stream_key), Population(spec.seed, spec.user_count))
    rnd = run.rng.random
    start_us = hour_us(spec.start)
    size = run.population.size
    recent: deque[tuple[User, Device]] = deque()
    for h, count in enumerate(hour_counts(spec, run.rng)):
        if not count:
            continue
        base = start_us + h * US_PER_HOUR
        # Users join over time: 30 % of the population is active at the start, all by the end.
        active = max(1, math.ceil(size * (0.3 + 0.7 * (h + 1) / spec.hours)))
        # People use a product in sessions: most events come from someone active moments ago.
        pool_size = max(4, min(500, count // 10))
        for offset in sorted(int(rnd() * US_PER_HOUR) for _ in range(count)):
            if recent and rnd() < 0.7:
                user, device = recent[int(rnd() * len(recent))]
            else:
                # Skewed towards low indexes: a few heavy users, a long tail of occasional ones.
                user = run.population.user(min(active - 1, int(active * rnd() ** 1.7)))
                devices = user.devices
                device = devices[0] if len(devices) == 1 or rnd() < 0.6 else run.rng.choice(devices)
                recent.append((user, device))
                while len(recent) > pool_size:
                    recent.popleft()
            event = _make_event(run, user, device, base + offset)
            if spec.invalid_fraction and rnd() < spec.invalid_fraction:
                _spoil(event, run.rng)
            yield event


def _make_event(run: _Run, user: User, device: Device, upload_us: int) -> dict[str, Any]:
    rng = run.rng
    rnd = rng.random
    fmt = run.fmt
    devices = user.devices
    state = run.devices.get(device.device_id)
    if state is None:
        state = run.devices[device.device_id] = _DeviceState(
            rng.choice((0, 1, 2, 3, 5)) if device is devices[0] else rng.choice((0, 0, 1, 2))
        )

    # Mostly seconds between the event and its upload; some mobile events arrive hours or days
    # late (offline), which puts their event_time in an earlier hour than their export hour.
    r = rnd()
    if r < 0.95:
        lag = 50_000 + int(rnd() * 20_000_000)
    elif r < 0.995:
        lag = int(rnd() * 2 * US_PER_HOUR)
    else:
        lag = int(rnd() * 72 * US_PER_HOUR)
    event_us = upload_us - lag

    forced: str | None = None
    identified = user.user_id is not None and state.anonymous_left <= 0
    if not identified:
        state.anonymous_left -= 1
    elif state.current_user != user.index:
        state.current_user = user.index
        forced = "Login" if user.index in run.signed_up else "Sign Up"
        run.signed_up.add(user.index)

    if state.last_us < 0 or event_us - state.last_us > _SESSION_GAP_US:
        state.session_id = event_us // 1000
        if forced is None and rnd() < 0.5:
            forced = "session_start"
    state.last_us = max(state.last_us, event_us)
    state.event_counter += 1
    first_us = run.user_first_us.setdefault(user.index, event_us)

    event_type, event_properties, data_type = _event_body(run, user, device, forced)
    if event_type == "session_end":
        state.last_us = -1  # the next event opens a new session

    groups: dict[str, list[str]] = (
        {"company": [user.company]} if user.company and identified else {}
    )
    group_properties: dict[str, Any] = {}
    if event_type == "$groupidentify" and user.company:
        group_properties = {
            "company": {
                user.company: {
                    "industry": rng.choice(vocab.INDUSTRIES),
                    "seats": rng.randint(1, 500),
                    "plan": rng.choice(vocab.PLANS),
                }
            }
        }
    user_properties = dict(user.properties if identified else user.anonymous_properties)
    if event_type == "$identify":
        user_properties["plan"] = rng.choice(vocab.PLANS)
        user_properties["last_seen_city"] = device.context["city"]

    received_us = upload_us - int(rnd() * 5_000)
    insert_id = uuid4_from_bits(rng.getrandbits(128)) if rnd() < 0.9 else None
    return {
        **device.context,
        "$insert_id": insert_id,
        "$insert_key": f"{device.device_id}#{insert_id}" if insert_id else None,
        "$schema": None,
        "amplitude_attribution_ids": None,
        "amplitude_event_type": None,
        "amplitude_id": user.amplitude_id if identified else device.amplitude_id,
        "app": run.spec.project_id,
        "client_event_time": fmt(event_us + device.skew_us),
        "client_upload_time": fmt(received_us - 40_000 + device.skew_us),
        "data": {"path": "/2/httpapi", "user_properties_updated": event_type == "$identify"},
        "data_type": data_type,
        "event_id": state.event_counter,
        "event_properties": event_properties,
        "event_time": fmt(event_us),
        "event_type": event_type,
        "global_user_properties": {},
        "group_properties": group_properties,
        "groups": groups,
        "is_attribution_event": False,
        "partner_id": None,
        "paying": "true" if identified and user.properties["is_paying"] else None,
        "plan": {},
        "processed_time": fmt(upload_us + 500_000 + int(rnd() * 90_000_000)),
        "sample_rate": None,
        "server_received_time": fmt(received_us),
        "server_upload_time": fmt(upload_us),
        "session_id": state.session_id,
        "source_id": None,
        "user_creation_time": fmt(first_us),
        "user_id": user.user_id if identified else None,
        "user_properties": user_properties,
        "uuid": uuid4_from_bits(rng.getrandbits(128)),
    }


def _event_body(
    run: _Run, user: User, device: Device, forced: str | None
) -> tuple[str, dict[str, Any], str]:
    """Event type, event_properties and data_type of one event."""
    rng = run.rng
    r = rng.random()
    if forced in ("Login", "Sign Up"):
        return forced, {"method": rng.choice(("email", "google", "apple")), "ok": True}, "event"
    if forced == "session_start":
        return "session_start", {}, "event"
    if r < 0.03:
        return "$identify", {}, "identify"
    if r < 0.038 and user.company:
        return "$groupidentify", {}, "group_identify"
    if r < 0.06:
        return "session_end", {}, "event"
    if r < 0.09:
        return _revenue(rng)
    if device.is_web and r < 0.5:
        return "[Amplitude] Page Viewed", _page_view(rng), "event"
    name = _APP_EVENTS[int(rng.random() * len(_APP_EVENTS))]
    return name, _app_properties(rng, name), "event"


def _revenue(rng: random.Random) -> tuple[str, dict[str, Any], str]:
    product_id, product_name, price = rng.choice(vocab.PRODUCTS)
    quantity = rng.choice((1, 1, 1, 2, 3))
    revenue = round(price * quantity, 2)
    if rng.random() < 0.2:
        # The legacy revenue event of older SDKs, with $-prefixed properties.
        props = {"$price": price, "$quantity": quantity, "$productId": product_id}
        return "revenue_amount", {**props, "$revenue": revenue, "$revenueType": "purchase"}, "event"
    return (
        "Order Completed",
        {
            "revenue": revenue,
            "price": price,
            "quantity": quantity,
            "productId": product_id,
            "revenueType": "purchase",
            "product_name": product_name,
            "currency": rng.choice(vocab.CURRENCIES),
            "order_id": f"ord-{rng.getrandbits(32):08x}",
        },
        "event",
    )


def _page_view(rng: random.Random) -> dict[str, Any]:
    host = rng.choice(vocab.WEB_HOSTS)
    path, title = _PAGES[int(rng.random() * len(_PAGES))]
    url = f"https://{host}{path}"
    location = url + (f"?q={rng.choice(vocab.SEARCH_TERMS)}" if path == "/search" else "")
    referrer, referring_domain = rng.choice(vocab.REFERRERS)
    props: dict[str, Any] = {
        "[Amplitude] Page Domain": host,
        "[Amplitude] Page Location": location,
        "[Amplitude] Page Path": path,
        "[Amplitude] Page Title": title,
        "[Amplitude] Page URL": url,
        "[Amplitude] Page Counter": rng.randint(1, 12),
        "[Amplitude] Viewport Height": rng.choice((720, 800, 900, 1080)),
        "[Amplitude] Viewport Width": rng.choice((390, 1280, 1440, 1920)),
    }
    if referrer:
        props["referrer"] = referrer
        props["referring_domain"] = referring_domain
    return props


def _app_properties(rng: random.Random, name: str) -> dict[str, Any]:
    if name == "Search Performed":
        return {"query": rng.choice(vocab.SEARCH_TERMS), "results": rng.randint(0, 120)}
    if name in ("Product Viewed", "Add to Cart", "Checkout Started"):
        product_id, product_name, price = rng.choice(vocab.PRODUCTS)
        return {"productId": product_id, "product_name": product_name, "price": price}
    if name == "Button Clicked":
        return {"button_text": rng.choice(vocab.BUTTONS), "screen": rng.choice(("home", "cart"))}
    if name == "Video Played ▶️":
        return {"video_id": rng.randint(1, 400), "duration_s": round(rng.uniform(5, 600), 1)}
    return {"feature": rng.choice(("export", "share", "thème sombre", "検索")), "count": 1}


def _spoil(event: dict[str, Any], rng: random.Random) -> None:
    """Make a record invalid in one of the ways real exports can be (for dead-letter tests)."""
    kind = rng.randrange(4)
    if kind == 0:
        if rng.random() < 0.5:
            del event["event_type"]
        else:
            event["event_type"] = None
    elif kind == 1:
        event["user_id"] = None
        event["device_id"] = None
    elif kind == 2:
        # Every time an event could be placed by (a target falls back from event_time to
        # client_event_time to server_received_time), so none is left.
        bad_time = rng.choice(("not-a-time", "2024-13-45 99:61:00.000000", ""))
        for field in ("event_time", "client_event_time", "server_received_time"):
            event[field] = bad_time
    else:
        event["event_properties"] = rng.choice(("oops", ["a", "list"], 42))
