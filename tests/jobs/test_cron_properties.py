"""Property tests for cron validation: any text is either a normalised 5-field expression that fires,
or `Invalid` with a cron error code; never another exception."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from nekzus.errors import Invalid
from nekzus.jobs.cron import next_fire, validate_cron

atoms = st.one_of(
    st.sampled_from(
        ["*", "*/5", "0", "59", "60", "1-5", "5-1", "1,2,3", "MON", "jan", "L", "?", "#", "-", "/", "*/0"]
    ),
    st.integers(-5, 100).map(str),
    st.text(max_size=4),
)
expressions = st.one_of(
    st.lists(atoms, min_size=0, max_size=7).map(" ".join),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(expression=expressions)
def test_validate_cron_returns_a_firing_expression_or_invalid(expression: str) -> None:
    try:
        text = validate_cron(expression)
    except Invalid as exc:
        assert exc.code in ("INVALID_CRON", "MISSING_CRON"), exc.code
        if expression.strip():
            assert exc.code == "INVALID_CRON"
        return
    assert text == " ".join(text.split()) and len(text.split(" ")) == 5
    assert validate_cron(text) == text
    assert next_fire(text, datetime(2030, 1, 1, tzinfo=UTC), UTC) > datetime(2030, 1, 1, tzinfo=UTC)


@given(garbage=st.text(st.characters(exclude_characters="0123456789*/,-? \t\n"), min_size=1, max_size=10))
def test_garbage_fields_are_invalid_cron(garbage: str) -> None:
    try:
        validate_cron(f"{garbage} * * * *")
    except Invalid as exc:
        assert exc.code == "INVALID_CRON"
    else:
        # only month/weekday-style names are words croniter accepts, and not in the minute field
        raise AssertionError(f"{garbage!r} accepted as a minute")
