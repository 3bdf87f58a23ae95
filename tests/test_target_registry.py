"""The alias registry: durable, user-only, WAL, one alias per device, shared devices recorded."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from target_posthog.registry import AliasRegistry, Claim, PendingAlias, RegistryError

T0 = "2024-03-01T00:00:00.000000+00:00"


def test_registry_file_is_user_only_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "aliases.sqlite"
    registry = AliasRegistry(path)
    registry.record_confirmed([PendingAlias("d1", "u1", T0)])
    for file in path.parent.iterdir():  # the db and SQLite's -wal/-shm files
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    registry.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_pair_is_new_once_then_known_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "aliases.sqlite"
    registry = AliasRegistry(path)
    assert registry.claim("d1", "u1", T0) is Claim.NEW
    assert registry.claim("d1", "u1", T0) is Claim.KNOWN  # in flight: never sent twice
    assert registry.claim("d2", "u1", T0) is Claim.NEW  # a user with two devices: two aliases
    registry.record_confirmed([PendingAlias("d1", "u1", T0)])
    registry.close()

    reopened = AliasRegistry(path)
    assert reopened.claim("d1", "u1", T0) is Claim.KNOWN
    # d2 was never confirmed (say the run crashed): the next run sends it again.
    assert reopened.claim("d2", "u1", T0) is Claim.NEW
    assert reopened.count() == 1
    reopened.close()


def test_shared_device_is_recorded_counted_once_and_not_aliased(tmp_path: Path) -> None:
    path = tmp_path / "aliases.sqlite"
    registry = AliasRegistry(path)
    assert registry.claim("d1", "u1", T0) is Claim.NEW
    assert registry.claim("d1", "u2", T0) is Claim.SHARED_DEVICE
    assert registry.claim("d1", "u2", T0) is Claim.SHARED_DEVICE
    assert registry.shared_device_pairs == 1
    registry.close()
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT device_id, user_id FROM shared_devices").fetchall()
    assert rows == [("d1", "u2")]


def test_read_only_registry_never_creates_or_writes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "aliases.sqlite"
    dry = AliasRegistry(path, read_only=True)
    assert dry.claim("d1", "u1", T0) is Claim.NEW
    dry.record_confirmed([PendingAlias("d1", "u1", T0)])
    assert dry.claim("d1", "u1", T0) is Claim.KNOWN
    dry.close()
    assert not path.exists()

    real = AliasRegistry(path)
    real.record_confirmed([PendingAlias("d9", "u9", T0)])
    real.close()
    before = path.read_bytes()
    dry = AliasRegistry(path, read_only=True)
    assert dry.claim("d9", "u9", T0) is Claim.KNOWN  # reads what real runs recorded
    assert dry.claim("d9", "u8", T0) is Claim.SHARED_DEVICE
    dry.close()
    assert path.read_bytes() == before


def test_a_registry_locked_by_another_process_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "aliases.sqlite"
    registry = AliasRegistry(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        registry._writer.execute("PRAGMA busy_timeout=50")
        with pytest.raises(RegistryError, match="could not be written"):
            registry.record_confirmed([PendingAlias("d1", "u1", T0)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    registry.record_confirmed([PendingAlias("d1", "u1", T0)])  # lock gone: works, not corrupt
    assert registry.count() == 1
    registry.close()


def test_a_batch_of_aliases_is_stored_whole_or_not_at_all(tmp_path: Path) -> None:
    registry = AliasRegistry(tmp_path / "aliases.sqlite")
    broken = PendingAlias("d3", "u3", object())  # type: ignore[arg-type]  # fails mid-batch
    with pytest.raises(RegistryError):
        registry.record_confirmed(
            [PendingAlias("d1", "u1", T0), PendingAlias("d2", "u2", T0), broken]
        )
    assert registry.count() == 0  # the first two were not kept either
    registry.record_confirmed([PendingAlias("d1", "u1", T0)])
    assert registry.count() == 1
    registry.close()
