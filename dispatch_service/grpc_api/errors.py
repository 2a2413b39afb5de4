"""The one place exceptions become gRPC statuses (with google.rpc details)."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from dispatch_service.errors import (
    AlreadyExists,
    DispatchError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)

log = logging.getLogger(__name__)

STATUS_CODES: dict[type[DispatchError], int] = {
    InvalidArgument: code_pb2.INVALID_ARGUMENT,
    Unauthenticated: code_pb2.UNAUTHENTICATED,
    PermissionDenied: code_pb2.PERMISSION_DENIED,
    NotFound: code_pb2.NOT_FOUND,
    FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    AlreadyExists: code_pb2.ALREADY_EXISTS,
}

ERROR_DOMAIN = "invites.v1"
INTERNAL_MESSAGE = "internal error; the server logged the details"
UNAVAILABLE_MESSAGE = "the database is not reachable right now; retry later"
UNAVAILABLE_RETRY_SECONDS = 1
ABORTED_MESSAGE = "the call conflicted with concurrent work and changed nothing; retry it"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(error: DispatchError) -> grpc.Status:
    """The rich status for a known error: code, safe message, ErrorInfo and field violations."""
    code = next((c for cls, c in STATUS_CODES.items() if isinstance(error, cls)), code_pb2.INTERNAL)
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))]
    if isinstance(error, InvalidArgument) and error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        details.append(_pack(bad_request))
    status = status_pb2.Status(code=code, message=error.message, details=details)
    return rpc_status.to_status(status)


def internal_status() -> grpc.Status:
    """A fixed INTERNAL status: never the exception's text, which may hold data or secrets."""
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE))


def unavailable_status(retry_seconds: int = UNAVAILABLE_RETRY_SECONDS) -> grpc.Status:
    """UNAVAILABLE (what standard gRPC retry policies retry) with RetryInfo and ErrorInfo, for
    a call that failed because the database (or another dependency) is away."""
    details = [
        _pack(error_details_pb2.ErrorInfo(reason="DEPENDENCY_UNAVAILABLE", domain=ERROR_DOMAIN)),
        _pack(error_details_pb2.RetryInfo(retry_delay={"seconds": retry_seconds})),
    ]
    status = status_pb2.Status(
        code=code_pb2.UNAVAILABLE, message=UNAVAILABLE_MESSAGE, details=details
    )
    return rpc_status.to_status(status)


def aborted_status() -> grpc.Status:
    """ABORTED (gRPC's code for a concurrency conflict: retry at a higher level) with ErrorInfo,
    for a call whose transaction Postgres rolled back as a deadlock or serialization victim."""
    details = [
        _pack(error_details_pb2.ErrorInfo(reason="CONCURRENT_CONFLICT", domain=ERROR_DOMAIN))
    ]
    status = status_pb2.Status(code=code_pb2.ABORTED, message=ABORTED_MESSAGE, details=details)
    return rpc_status.to_status(status)
