"""The dispatch service's exception tree. Domain code raises these; it never imports grpc.

    DispatchError                  base; `reason` is a machine-readable ErrorInfo reason
    ├── InvalidArgument            bad input; carries field violations          INVALID_ARGUMENT
    ├── Unauthenticated            missing or wrong credential or actor         UNAUTHENTICATED
    ├── PermissionDenied           the actor's role does not allow it           PERMISSION_DENIED
    ├── NotFound                   no such id in the caller's workspace         NOT_FOUND
    ├── FailedPrecondition         the system is not in a state that allows it  FAILED_PRECONDITION
    └── AlreadyExists              a different request already used the key     ALREADY_EXISTS
        └── IdempotencyKeyRace     persistence: a concurrent StartRun won the key (answered
                                   with the winner's run, never sent to a client)

The one table mapping these to gRPC status codes is dispatch_service/grpc_api/errors.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field and what is wrong with it."""

    field: str
    description: str


class DispatchError(Exception):
    """Base of every error a client may see. The message is safe to show; no secrets, no repr."""

    reason: str = "DISPATCH_ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason


class InvalidArgument(DispatchError):
    """The request is malformed; nothing was changed."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, *violations: FieldViolation, message: str | None = None) -> None:
        text = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(text or "invalid argument")
        self.violations = violations


class Unauthenticated(DispatchError):
    """No valid credential or actor."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(DispatchError):
    """The actor's role does not allow this action."""

    reason = "PERMISSION_DENIED"


class NotFound(DispatchError):
    """The id does not exist in the caller's workspace (other workspaces' ids look the same)."""

    reason = "NOT_FOUND"


class FailedPrecondition(DispatchError):
    """The request is valid but the current state does not allow it."""

    reason = "FAILED_PRECONDITION"


class AlreadyExists(DispatchError):
    """An idempotency key or unique value is already used by a different request."""

    reason = "ALREADY_EXISTS"


class IdempotencyKeyRace(AlreadyExists):
    """Persistence: a concurrent StartRun committed the same idempotency key first (StartRun
    answers with that run instead)."""

    reason = "IDEMPOTENCY_KEY_RACE"
