"""Settings: checked up front with one clear line per problem, region URLs, https only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
from singer_sdk.exceptions import ConfigValidationError
from tap_amplitude.client import ExportClient
from tap_amplitude.tap import TapAmplitude

from tests.conftest import TAP_API_KEY, TAP_SECRET

# A mapping proxy: the SDK adds defaults into the dict it is given, so each test copies this.
BASE = MappingProxyType(
    {"api_key": TAP_API_KEY, "secret_key": TAP_SECRET, "start_date": "2024-03-01T00:00:00Z"}
)


def errors_for(**config) -> list[str]:
    with pytest.raises(ConfigValidationError) as raised:
        TapAmplitude(config={k: v for k, v in config.items() if v is not None})
    return raised.value.errors


def test_eu_region_uses_amplitudes_eu_host(tmp_path):
    tap = TapAmplitude(config={**BASE, "data_region": "eu"})
    assert tap.base_url == "https://analytics.eu.amplitude.com"
    client = ExportClient(
        base_url=tap.base_url,
        api_key=TAP_API_KEY,
        secret_key=TAP_SECRET,
        workdir=tmp_path,
        request_timeout=5,
        max_retries=0,
        retry_base_seconds=0,
    )
    assert client.url == "https://analytics.eu.amplitude.com/api/2/export"
    assert TAP_SECRET not in repr(client)


def test_us_is_the_default_region_and_api_url_overrides_it():
    assert TapAmplitude(config=dict(BASE)).base_url == "https://amplitude.com"
    tap = TapAmplitude(config={**BASE, "data_region": "eu", "api_url": "https://proxy.example/"})
    assert tap.base_url == "https://proxy.example/"


def test_end_before_start_is_refused():
    errors = errors_for(**BASE, end_date="2024-02-01T00:00:00Z")
    assert errors == ["end_date 2024-02-01T00:00:00Z is not after start_date 2024-03-01T00:00:00Z."]


def test_start_in_the_future_is_refused():
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    assert errors_for(**{**BASE, "start_date": future}) == [
        f"start_date {future} is in the future."
    ]


def test_unknown_region_is_refused():
    [error] = errors_for(**BASE, data_region="mars")
    assert "mars" in error and "eu" in error and "us" in error


def test_plain_http_only_for_loopback():
    [error] = errors_for(**BASE, api_url="http://amplitude.example.com")
    assert "https" in error
    TapAmplitude(config={**BASE, "api_url": "http://127.0.0.1:8080"})
    TapAmplitude(config={**BASE, "api_url": "http://localhost:8080"})


def test_keys_or_export_path_are_required(tmp_path):
    [error] = errors_for(start_date="2024-03-01T00:00:00Z")
    assert "api_key and secret_key" in error and "export_path" in error
    member = tmp_path / "1_2024-03-01_0#0.json.gz"
    member.write_bytes(b"")
    TapAmplitude(config={"start_date": "2024-03-01", "export_path": str(tmp_path)})


def test_export_path_without_export_files_is_refused(tmp_path):
    [error] = errors_for(start_date="2024-03-01", export_path=str(tmp_path))
    assert "names no .zip or .json.gz files" in error


def test_unknown_settings_are_named():
    errors = errors_for(**BASE, window_size=3, secret="x")
    assert errors == ["Unknown setting 'secret'.", "Unknown setting 'window_size'."]


def test_several_problems_are_all_reported_at_once():
    errors = errors_for(start_date="2024-03-01", end_date="2023-01-01", api_url="ftp://x")
    assert len(errors) == 3


def test_end_is_capped_at_what_amplitude_has_loaded():
    tap = TapAmplitude(config={**BASE, "end_date": "2999-01-01T00:00:00Z"})
    now = datetime.now(UTC)
    assert tap.end_hour <= now - timedelta(hours=2)
    assert tap.end_hour > now - timedelta(hours=3, minutes=1)
    assert tap.end_hour.minute == 0


def test_end_date_is_floored_to_its_hour():
    tap = TapAmplitude(config={**BASE, "end_date": "2024-03-02T10:30:00Z"})
    assert tap.end_hour == datetime(2024, 3, 2, 10, tzinfo=UTC)
