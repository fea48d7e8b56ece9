"""fastcms.sqlite3: the write transactions of one process take turns on a lock, and every way a
transaction ends gives the lock back. Runs on a database file of its own, whatever the suite's
database is."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connections, transaction

from fastcms.sqlite3.base import write_lock

ALIAS = "sqlite_lock_test"


@pytest.fixture
def alias(tmp_path: Path, django_db_blocker: Any) -> Iterator[str]:
    """A second database alias on the FastCMS SQLite backend, on a fresh file, with a table `t`
    (not the test database: pytest-django's guard is lifted for it)."""
    with django_db_blocker.unblock():
        yield from _alias(tmp_path)


def _alias(tmp_path: Path) -> Iterator[str]:
    name = str(tmp_path / "locks.sqlite3")
    options = {"timeout": 0.5, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    configured = connections.configure_settings(
        {
            "default": dict(connections.settings["default"]),
            ALIAS: {"ENGINE": "fastcms.sqlite3", "NAME": name, "OPTIONS": options},
        }
    )
    connections.settings[ALIAS] = configured[ALIAS]
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
    try:
        yield ALIAS
    finally:
        connections[ALIAS].close()
        del connections[ALIAS]  # this thread's connection object, on this test's file
        del connections.settings[ALIAS]
        assert not write_lock(name).locked(), "a transaction kept the write lock"


def lock_of(alias: str) -> threading.Lock:
    return write_lock(str(connections[alias].settings_dict["NAME"]))


def in_thread(target: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        finally:
            connections[ALIAS].close()  # this thread's own connection

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def count(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM t")
        return cursor.fetchone()[0]


def test_a_second_writer_waits_for_the_first_to_commit(alias: str) -> None:
    order: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def first() -> None:
        with transaction.atomic(using=alias):
            connections[alias].cursor().execute("INSERT INTO t (v) VALUES ('a')")
            order.append("first in")
            inside.set()
            release.wait(5)
            order.append("first out")

    def second() -> None:
        inside.wait(5)
        with transaction.atomic(using=alias):
            order.append("second in")
            connections[alias].cursor().execute("INSERT INTO t (v) VALUES ('b')")

    threads = [in_thread(first), in_thread(second)]
    inside.wait(5)
    time.sleep(0.1)  # the second writer is queued on the lock by now
    assert order == ["first in"]
    release.set()
    for thread in threads:
        thread.join(5)
    assert order == ["first in", "first out", "second in"]
    assert count(alias) == 2
    assert not lock_of(alias).locked()


def test_the_lock_is_held_only_inside_a_transaction(alias: str) -> None:
    lock = lock_of(alias)
    connections[alias].cursor().execute("INSERT INTO t (v) VALUES ('outside')")  # autocommit: no lock
    assert not lock.locked()
    with transaction.atomic(using=alias):
        assert lock.locked()
        with transaction.atomic(using=alias):  # a savepoint: the same transaction
            connections[alias].cursor().execute("INSERT INTO t (v) VALUES ('inside')")
            assert lock.locked()
        assert lock.locked()
    assert not lock.locked()
    assert count(alias) == 2


def test_commit_hooks_run_after_the_lock_is_given_back(alias: str) -> None:
    seen: list[bool] = []
    with transaction.atomic(using=alias):
        connections[alias].cursor().execute("INSERT INTO t (v) VALUES ('a')")
        transaction.on_commit(lambda: seen.append(lock_of(alias).locked()), using=alias)
    assert seen == [False]


def test_an_error_inside_rolls_back_and_gives_the_lock_back(alias: str) -> None:
    def fail_inside() -> None:
        with transaction.atomic(using=alias):
            connections[alias].cursor().execute("INSERT INTO t (v) VALUES ('gone')")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_inside()
    assert not lock_of(alias).locked()
    assert count(alias) == 0


def test_a_database_error_gives_the_lock_back(alias: str) -> None:
    connections[alias].cursor().execute("INSERT INTO t (v) VALUES ('taken')")
    with pytest.raises(IntegrityError), transaction.atomic(using=alias):
        connections[alias].cursor().execute("INSERT INTO t (v) VALUES ('taken')")
    assert not lock_of(alias).locked()
    with transaction.atomic(using=alias):  # and the next transaction goes ahead
        connections[alias].cursor().execute("INSERT INTO t (v) VALUES ('next')")
    assert count(alias) == 2


def test_closing_the_connection_inside_a_transaction_gives_the_lock_back(alias: str) -> None:
    released: list[bool] = []

    def close_inside() -> None:
        with transaction.atomic(using=alias):
            connections[alias].cursor().execute("INSERT INTO t (v) VALUES ('lost')")
            connections[alias].close()
            released.append(not lock_of(alias).locked())
            raise ZeroDivisionError  # leave the block the way a failed request does

    with pytest.raises(ZeroDivisionError):
        close_inside()
    assert released == [True]
    assert not lock_of(alias).locked()
    assert count(alias) == 0


def test_a_writer_that_waits_past_the_timeout_gets_database_is_locked(alias: str) -> None:
    holding = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with transaction.atomic(using=alias):
            holding.set()
            release.wait(5)

    thread = in_thread(holder)
    try:
        assert holding.wait(5)
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"), transaction.atomic(using=alias):
            pytest.fail("entered a transaction while another held the lock")
        assert 0.4 < time.monotonic() - started < 3  # the alias's timeout option: 0.5 s
    finally:
        release.set()
        thread.join(5)
    with transaction.atomic(using=alias):  # the refused writer left nothing behind
        connections[alias].cursor().execute("INSERT INTO t (v) VALUES ('after')")
    assert count(alias) == 1
