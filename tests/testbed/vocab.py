# ruff: noqa: RUF001  (en dashes in page titles are deliberate: real titles have them)
"""Realistic values for generated Amplitude exports (platforms, places, pages, products).

Kept apart from the generator's logic so the logic stays readable. Unicode (accents, CJK,
emoji) is deliberate: pipelines must carry it through unchanged.
"""

from __future__ import annotations

from typing import Any

# Context as Amplitude's SDKs report it. Note the browser SDK puts the *browser* in os_name
# and the OS in device_type (PostHog's importer maps them that way round).
DEVICE_PROFILES: list[dict[str, Any]] = [
    {
        "platform": "Web",
        "os_name": "Chrome",
        "os_version": "121",
        "device_brand": None,
        "device_manufacturer": None,
        "device_model": "Mac OS",
        "device_family": "Mac",
        "device_type": "Mac",
        "device_carrier": None,
        "library": "amplitude-ts/2.7.4",
    },
    {
        "platform": "Web",
        "os_name": "Firefox",
        "os_version": "123",
        "device_brand": None,
        "device_manufacturer": None,
        "device_model": "Windows",
        "device_family": "Windows",
        "device_type": "Windows",
        "device_carrier": None,
        "library": "amplitude-ts/2.7.4",
    },
    {
        "platform": "Web",
        "os_name": "Edge",
        "os_version": "122",
        "device_brand": None,
        "device_manufacturer": None,
        "device_model": "Windows",
        "device_family": "Windows",
        "device_type": "Windows",
        "device_carrier": None,
        "library": "amplitude-ts/2.5.2",
    },
    {
        "platform": "Web",
        "os_name": "Mobile Safari",
        "os_version": "17.3",
        "device_brand": "Apple",
        "device_manufacturer": "Apple",
        "device_model": "iPhone",
        "device_family": "Apple iPhone",
        "device_type": "iOS",
        "device_carrier": None,
        "library": "amplitude-ts/2.7.4",
    },
    {
        "platform": "Web",
        "os_name": "Chrome Mobile",
        "os_version": "121",
        "device_brand": "Samsung",
        "device_manufacturer": "Samsung",
        "device_model": "SM-G991B",
        "device_family": "Samsung Phone",
        "device_type": "Android",
        "device_carrier": None,
        "library": "amplitude-ts/2.7.4",
    },
    {
        "platform": "Web",
        "os_name": "Chrome",
        "os_version": "120",
        "device_brand": None,
        "device_manufacturer": None,
        "device_model": "Linux",
        "device_family": "Linux",
        "device_type": "Linux",
        "device_carrier": None,
        "library": "amplitude-js/8.21.9",
    },
    {
        "platform": "iOS",
        "os_name": "ios",
        "os_version": "17.2.1",
        "device_brand": "Apple",
        "device_manufacturer": "Apple",
        "device_model": "iPhone15,3",
        "device_family": "Apple iPhone",
        "device_type": "Apple iPhone 14 Pro Max",
        "device_carrier": "AT&T",
        "library": "amplitude-swift/1.4.1",
    },
    {
        "platform": "iOS",
        "os_name": "ipados",
        "os_version": "16.7.5",
        "device_brand": "Apple",
        "device_manufacturer": "Apple",
        "device_model": "iPad13,1",
        "device_family": "Apple iPad",
        "device_type": "Apple iPad Air (4th generation)",
        "device_carrier": None,
        "library": "amplitude-ios/8.17.1",
    },
    {
        "platform": "Android",
        "os_name": "android",
        "os_version": "14",
        "device_brand": "samsung",
        "device_manufacturer": "samsung",
        "device_model": "SM-S918B",
        "device_family": "Samsung Galaxy S23 Ultra",
        "device_type": "Samsung Galaxy S23 Ultra",
        "device_carrier": "Vodafone.de",
        "library": "amplitude-android/1.16.2",
    },
    {
        "platform": "Android",
        "os_name": "android",
        "os_version": "13",
        "device_brand": "google",
        "device_manufacturer": "Google",
        "device_model": "Pixel 7",
        "device_family": "Google Pixel",
        "device_type": "Google Pixel 7",
        "device_carrier": "ドコモ (NTT DOCOMO)",
        "library": "amplitude-android/1.12.0",
    },
]
# Relative frequency of each profile above (web dominates).
DEVICE_PROFILE_WEIGHTS: list[int] = [30, 12, 6, 10, 8, 3, 14, 3, 9, 5]

# country, region, city, dma, lat, lng, language
PLACES: list[tuple[str, str, str, str | None, float, float, str]] = [
    (
        "United States",
        "California",
        "San Francisco",
        "San Francisco-Oakland-San Jose, CA",
        37.7749,
        -122.4194,
        "English",
    ),
    ("United States", "New York", "New York", "New York, NY", 40.7128, -74.006, "English"),
    ("United States", "Texas", "Austin", "Austin, TX", 30.2672, -97.7431, "Spanish"),
    ("Germany", "Bavaria", "München", None, 48.1374, 11.5755, "German"),
    ("Germany", "Berlin", "Berlin", None, 52.52, 13.405, "German"),
    ("France", "Île-de-France", "Paris", None, 48.8566, 2.3522, "French"),
    ("Canada", "Quebec", "Montréal", None, 45.5019, -73.5674, "French"),
    ("Brazil", "São Paulo", "São Paulo", None, -23.5505, -46.6333, "Portuguese"),
    ("Japan", "Tokyo", "Tokyo", None, 35.6762, 139.6503, "Japanese"),
    ("Switzerland", "Zurich", "Zürich", None, 47.3769, 8.5417, "German"),
    ("Poland", "Lesser Poland", "Kraków", None, 50.0647, 19.945, "Polish"),
    ("United Kingdom", "England", "London", None, 51.5072, -0.1276, "English"),
    ("India", "Karnataka", "Bengaluru", None, 12.9716, 77.5946, "English"),
    ("China", "Shanghai", "上海", None, 31.2304, 121.4737, "Chinese"),
]
PLACE_WEIGHTS: list[int] = [14, 12, 5, 7, 6, 7, 3, 5, 6, 2, 2, 9, 5, 3]

WEB_HOSTS: list[str] = ["www.example-shop.com", "app.example-shop.com", "blog.example-shop.com"]
PAGES: list[tuple[str, str]] = [
    ("/", "Example Shop – Home"),
    ("/pricing", "Pricing · Example Shop"),
    ("/features", "Features"),
    ("/products/café-crème", "Café Crème ☕ | Example Shop"),
    ("/products/niño-sneakers", "Niño Sneakers 👟"),
    ("/ja/商品/4711", "東京 Tシャツ – 商品"),
    ("/de/über-uns", "Über uns"),
    ("/blog/how-we-scaled", "How we scaled to 1M users 🚀"),
    ("/cart", "Your cart"),
    ("/checkout", "Checkout"),
    ("/search", "Search results"),
    ("/docs/getting-started", "Getting started – Docs"),
    ("/account/settings", "Settings"),
]
PAGE_WEIGHTS: list[int] = [20, 8, 6, 7, 5, 3, 2, 4, 6, 4, 8, 5, 3]

# referrer, referring_domain ("" referrer = direct traffic, as the browser SDK sends it)
REFERRERS: list[tuple[str | None, str | None]] = [
    (None, None),
    ("https://www.google.com/", "www.google.com"),
    ("https://duckduckgo.com/", "duckduckgo.com"),
    ("https://t.co/", "t.co"),
    ("https://news.ycombinator.com/", "news.ycombinator.com"),
    ("https://www.bing.com/search?q=caf%C3%A9+cr%C3%A8me", "www.bing.com"),
    ("https://www.facebook.com/", "www.facebook.com"),
]
UTM_SOURCES: list[str] = ["google", "newsletter", "twitter", "facebook", "partner-müller", "EMPTY"]
UTM_MEDIUMS: list[str] = ["cpc", "email", "social", "referral", "EMPTY"]
UTM_CAMPAIGNS: list[str] = ["spring_sale_2024", "launch-🚀", "black_friday", "rentrée", "EMPTY"]

SEARCH_TERMS: list[str] = [
    "café au lait",
    "東京 ラーメン",
    "niño",
    "zapatos rojos",
    "Straße",
    "crème brûlée",
    "smørrebrød",
    "München Bier",
    "🍕 pizza",
    "Ελληνικά",
    "naïve résumé",
    "dog bed",
]
PRODUCTS: list[tuple[str, str, float]] = [
    ("sku-1001", "Café Crème ☕", 12.5),
    ("sku-1002", "Niño Sneakers 👟", 59.99),
    ("sku-1003", "東京 Tシャツ", 24.0),
    ("sku-1004", "Smørrebrød Kit", 34.9),
    ("sku-1005", "Crème brûlée Set", 19.95),
    ("sku-1006", "Pro Plan (annual)", 199.0),
]
CURRENCIES: list[str] = ["USD", "EUR", "JPY", "GBP", "BRL"]
BUTTONS: list[str] = ["Sign up", "Add to cart", "Weiter →", "Réserver", "今すぐ購入", "Share 🔗"]
PLANS: list[str] = ["free", "starter", "pro", "enterprise"]
FIRST_NAMES: list[str] = [
    "José",
    "Zoë",
    "Björn",
    "Aiko",
    "François",
    "Łukasz",
    "Ana",
    "Sam",
    "美咲",
    "Søren",
    "Chloé",
    "Ömer",
]
COMPANIES: list[str] = [
    "Acme GmbH",
    "Société Générale Démo",
    "株式会社テスト",
    "Ünicode Labs 🚀",
    "Initech",
    "Globex Corporation",
    "Ñandú S.A.",
    "Umbrella Ltd",
]
INDUSTRIES: list[str] = ["Retail", "Fintech", "Gaming", "Santé", "Logistics"]

# Custom event names of a typical product (unicode included), with relative weights.
APP_EVENTS: list[tuple[str, int]] = [
    ("Button Clicked", 12),
    ("Search Performed", 8),
    ("Product Viewed", 10),
    ("Add to Cart", 6),
    ("Checkout Started", 3),
    ("Video Played ▶️", 3),
    ("Feature Used", 6),
    ("Notification Opened", 3),
    ("Einstellungen geändert", 1),
]
