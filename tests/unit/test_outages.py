"""Expected outage errors are recognised, logged once per growing back-off step without a
traceback, and database outages map to UNAVAILABLE with RetryInfo."""

from __future__ import annotations

import logging

import psycopg
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from sqlalchemy import exc as sa_exc

from common.outages import OutageLog, is_conflict_error, is_outage_error
from dispatch_service.grpc_api.errors import aborted_status, unavailable_status


def refused() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_database_and_network_failures_are_outage_errors_and_bugs_are_not() -> None:
    assert is_outage_error(refused())
    assert is_outage_error(ConnectionResetError())
    assert is_outage_error(TimeoutError())
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = ConnectionRefusedError()
    assert is_outage_error(wrapped)
    assert not is_outage_error(ValueError("a bug"))
    assert not is_outage_error(KeyError("x"))
    # psycopg on its own (the run listener's connection): a lost or refused connection is an
    # outage; an error the server answered (a bad statement) is not.
    assert is_outage_error(psycopg.OperationalError("consuming input failed: server closed"))
    assert is_outage_error(psycopg.InterfaceError("the connection is closed"))
    assert not is_outage_error(psycopg.errors.SyntaxError("syntax error at or near"))


@pytest.mark.parametrize(
    "error", [psycopg.errors.DeadlockDetected("deadlock"), psycopg.errors.SerializationFailure("x")]
)
def test_a_transaction_rolled_back_by_a_conflict_is_not_an_outage(error: Exception) -> None:
    # SQLAlchemy wraps psycopg's class 40 errors in its OperationalError, which otherwise reads
    # as "the database is away".
    wrapped = sa_exc.OperationalError("UPDATE invite_message ...", {}, error)
    wrapped.__cause__ = error
    assert is_conflict_error(wrapped)
    assert not is_outage_error(wrapped)
    assert not is_conflict_error(refused())
    assert not is_conflict_error(psycopg.errors.SyntaxError("syntax error at or near"))
    status = status_pb2.Status.FromString(
        dict(aborted_status().trailing_metadata)["grpc-status-details-bin"]
    )
    assert status.code == code_pb2.ABORTED
    (info,) = status.details
    unpacked = error_details_pb2.ErrorInfo()
    assert info.Unpack(unpacked)
    assert unpacked.reason == "CONCURRENT_CONFLICT"


def test_a_long_outage_is_logged_once_per_growing_step_without_tracebacks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    monkeypatch.setattr("common.outages.time.monotonic", lambda: now[0])
    log = OutageLog(logging.getLogger("test.outage"), "claiming")
    with caplog.at_level(logging.WARNING, logger="test.outage"):
        for _ in range(600):  # 60 s of failures, ten a second
            log.failed(refused())
            now[0] += 0.1
        log.succeeded()
    lines = [r for r in caplog.records if r.name == "test.outage"]
    # at 0, 1, 3, 7, 15, 31 s (steps 1, 2, 4, 8, 16, 32 s), then the recovery line
    assert len(lines) == 7
    assert all(r.exc_info is None for r in lines)
    assert "recovered" in lines[-1].getMessage()
    assert "600 failures" in lines[-1].getMessage()


def test_an_unexpected_error_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    log = OutageLog(logging.getLogger("test.bug"), "claiming")
    with caplog.at_level(logging.WARNING, logger="test.bug"):
        log.failed(ValueError("a bug"))
    assert caplog.records[0].exc_info is not None


def test_unavailable_carries_retry_info() -> None:
    grpc_status = unavailable_status(2)
    assert grpc_status.code.name == "UNAVAILABLE"
    details = dict(grpc_status.trailing_metadata)["grpc-status-details-bin"]
    decoded = status_pb2.Status.FromString(details)
    assert decoded.code == code_pb2.UNAVAILABLE
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in decoded.details if d.Is(retry.DESCRIPTOR))
    assert retry.retry_delay.seconds == 2
