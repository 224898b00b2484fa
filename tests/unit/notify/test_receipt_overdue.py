"""Which WeChat messages past their receipt time-out go out again by SMS (pure rule, no I/O)."""

from __future__ import annotations

import pytest

from services.notify.domain.routing import receipt_overdue_reason


def reason(kind: str = "callout", state: str | None = "open", *, answered: bool = False, before: bool = False,
           sms: bool = True, expired: bool = False) -> str | None:
    return receipt_overdue_reason(kind=kind, callout_state=state, answered=answered, sent_before_listening=before,
                                  sms_possible=sms, expired=expired)


def test_an_open_unanswered_call_out_goes_again_by_sms() -> None:
    assert reason() is None


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"answered": True}, "answered"),
    ({"state": "assigned"}, "answered"),
    ({"state": "closed"}, "closed"),
    ({"state": "closed", "answered": True}, "answered"),
    ({"before": True}, "listener_gap"),
    ({"expired": True}, "expired"),
    ({"expired": True, "answered": True}, "answered"),
    ({"sms": False}, "no_sms"),
    ({"kind": "assigned", "state": "closed"}, "closed"),
    ({"kind": "stand_down", "state": "closed", "before": True}, "listener_gap"),
])
def test_messages_that_would_only_repeat_what_the_volunteer_has_are_not_sent_again(
    kwargs: dict[str, object], expected: str,
) -> None:
    assert reason(**kwargs) == expected  # type: ignore[arg-type]


def test_an_assignment_or_stand_down_without_receipt_goes_again_by_sms() -> None:
    assert reason("assigned", "assigned") is None
    assert reason("stand_down", "closed") is None  # a stand-down is the one message a closed call-out still needs
    assert reason("assigned", "assigned", expired=True) is None  # the call-out's deadline is not the assignment's
