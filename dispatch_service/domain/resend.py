"""ResendRun: which of an earlier run's recipients an operator may send to again (pure).

A resend picks outcome classes of the earlier run's messages:

* ``failed``: the message never reached the provider for good: transient errors until the
  attempts ran out (retries_exhausted), or still unsent at the run's deadline (expired);
* ``rejected``: failed with any provider error (provider_rejected);
* ``error_codes``: failed with one of these provider codes (e.g. 131026 undeliverable);
* ``outcome_unknown``: the provider call's outcome stayed unknown (it may have been sent: the
  operator accepts a possible duplicate by choosing it);
* ``not_read_after``: sent or delivered, but not read that long after it was sent.

Nobody whose message was delivered (or read) is selected unless ``not_read_after`` is chosen,
and read messages never are. The selected households then go through a fresh precheck with the
usual rules: Do-Not-Message, inactive guests, and ``already_invited`` (a recipient some other
run invited meanwhile is not invited again); only the not-read ones are listed as resend phones,
exempt from ``already_invited``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from common.vocabulary import MessageState, RejectionReason
from dispatch_service.errors import FieldViolation, InvalidArgument

FAILED_REASONS = frozenset({RejectionReason.RETRIES_EXHAUSTED, RejectionReason.EXPIRED})
"""Reasons the ``failed`` class selects."""
REJECTED_REASONS = frozenset({RejectionReason.PROVIDER_REJECTED})
"""Reasons the ``rejected`` class selects."""
UNKNOWN_REASONS = frozenset({RejectionReason.OUTCOME_UNKNOWN})
"""Reasons the ``outcome_unknown`` class selects."""
NOT_READ_STATES = frozenset({MessageState.SENT, MessageState.DELIVERED})
"""States the ``not_read_after`` class selects (once sent long enough ago)."""
MAX_ERROR_CODES = 50


@dataclass(frozen=True)
class ResendSelection:
    """The outcome classes chosen (at least one)."""

    failed: bool = False
    error_codes: tuple[int, ...] = ()
    outcome_unknown: bool = False
    not_read_after: timedelta | None = None
    rejected: bool = False

    @property
    def failed_reasons(self) -> frozenset[RejectionReason]:
        """Failure reasons selected whatever the error code."""
        chosen: set[RejectionReason] = set()
        for selected, reasons in (
            (self.failed, FAILED_REASONS),
            (self.rejected, REJECTED_REASONS),
            (self.outcome_unknown, UNKNOWN_REASONS),
        ):
            if selected:
                chosen |= reasons
        return frozenset(chosen)


def resend_selection(
    failed: bool,
    error_codes: tuple[int, ...],
    outcome_unknown: bool,
    not_read_after_seconds: int,
    rejected: bool = False,
) -> ResendSelection:
    """Validate the raw classes; InvalidArgument when none or a bad value is given."""
    violations: list[FieldViolation] = []
    if not_read_after_seconds < 0:
        violations.append(FieldViolation("selection.not_read_after_seconds", "must be >= 0"))
    if any(code <= 0 for code in error_codes) or len(error_codes) > MAX_ERROR_CODES:
        violations.append(
            FieldViolation(
                "selection.error_codes", f"at most {MAX_ERROR_CODES} positive provider codes"
            )
        )
    selection = ResendSelection(
        failed=failed,
        error_codes=tuple(sorted(set(error_codes))),
        outcome_unknown=outcome_unknown,
        rejected=rejected,
        not_read_after=timedelta(seconds=not_read_after_seconds)
        if not_read_after_seconds > 0
        else None,
    )
    if not violations and not (
        selection.failed_reasons or selection.error_codes or selection.not_read_after
    ):
        violations.append(
            FieldViolation(
                "selection",
                "choose at least one class: failed, rejected, error_codes, outcome_unknown,"
                " not_read_after",
            )
        )
    if violations:
        raise InvalidArgument(*violations)
    return selection
