"""The registry's location as text: a SQLite path or a PostgreSQL URL, and its secrets.

What may be shown of a location (`redact`), which strings must never be shown (`secrets_of`,
`hide_secrets`), and what a driver's error most likely means for the user (`likely_cause`).
Used by every registry backend (registry_database, registry_sqlite, registry_postgres).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence

_URL_SCHEMES = ("postgresql://", "postgres://")

# Any URL scheme (SQLAlchemy's `postgresql+psycopg://` included), and libpq's key=value form:
# neither is a file path, and taking one for a path would put its password in a file name.
_ANY_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_KEY_VALUE = re.compile(r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password)\s*=", re.IGNORECASE)
_KEY_VALUE_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# A driver message quoting back a URL it could not parse: shown without the quote.
UNPARSED_URL = ("invalid uri", "uri query", "connection info string", "invalid dsn")


def is_postgres_url(location: str) -> bool:
    return location.lower().startswith(_URL_SCHEMES)


def unsupported_location(location: str) -> bool:
    """True for a URL other than postgresql:// or a libpq key=value string (not a file path)."""
    if is_postgres_url(location):
        return False
    return bool(_ANY_URL.match(location) or _KEY_VALUE.search(location))


def redact(location: str) -> str:
    """The location as it may be shown: a URL's password and secret query values as ***."""
    if not _ANY_URL.match(location):
        return _KEY_VALUE_PASSWORD.sub(r"\1***", location)
    # The credentials end at the last "@": a password typed without percent-encoding may hold
    # "/", "?" or "#", which would end the URL's netloc early for urlsplit.
    scheme, _, rest = location.partition("://")
    credentials, at, rest = rest.rpartition("@")
    login = ""
    if at:
        user = credentials.split(":", 1)[0]
        login = f"{user}:***@" if ":" in credentials else f"{user}@"
    parts = urllib.parse.urlsplit(f"{scheme}://{rest}")
    netloc = login + parts.netloc
    query = urllib.parse.urlencode(
        [
            (key, "***" if key.lower() in {"password", "sslpassword", "passfile"} else value)
            for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def with_lower_case_scheme(location: str) -> str:
    """A URL's scheme is case-insensitive (RFC 3986, 3.1) but libpq takes only lower case:
    ``POSTGRESQL://...`` is what the user meant by ``postgresql://...``."""
    scheme, sep, rest = location.partition("://")
    return f"{scheme.lower()}{sep}{rest}" if sep and _ANY_URL.match(location) else location


def hide_secrets(text: str, secrets: Sequence[str]) -> str:
    """`text` with each secret shown as ***, where it stands as a token of its own.

    A short password ("a", "pg") also occurs inside ordinary words of a driver's message
    ("password authentication failed"): replacing it there would mangle the message and reveal
    the password by the pattern of the damage. A secret is hidden wherever it is not part of a
    longer run of letters and digits, which is how a driver quotes a value back.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        pattern = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
        text = re.sub(pattern, "***", text)
    return text


def secrets_of(location: str) -> list[str]:
    """The strings that must never appear in a message: the password, raw and URL-decoded."""
    if not is_postgres_url(location):
        return []
    parts = urllib.parse.urlsplit(location)
    found = [parts.password or ""]
    found += [v for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() == "password"]
    return [s for secret in found if secret for s in {secret, urllib.parse.unquote(secret)}]


def likely_cause(message: str, default: str) -> str:
    """What the user should look at, from SQLite's or PostgreSQL's message."""
    lowered = message.lower()
    causes = (
        ("password authentication", "check the user name and password"),
        ("locked", "another process holds it"),
        ("not a database", "it is not an alias registry, or it is damaged"),
        ("malformed", "it is not an alias registry, or it is damaged"),
        ("does not exist", "create the database (or role) first"),
        ("permission denied", "the user needs rights to create and write tables there"),
        ("read-only", "the database is read-only"),
        ("connect", "check that the PostgreSQL server is running and reachable from here"),
        ("timeout", "check that the PostgreSQL server is running and reachable from here"),
    )
    for needle, cause in causes:
        if needle in lowered:
            return cause
    return default
