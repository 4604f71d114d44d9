"""Property tests for configuration loading: any YAML-shaped document either loads or fails with a
`ConfigError` that names the offending key; durations parse, round-trip and refuse garbage."""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nekzus.config.loader import ConfigError, load_config
from nekzus.config.model import Config, parse_duration

SECTIONS = sorted(Config.model_fields)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["30s", "5m", "1h", "-1s", "0", "127.0.0.1:0", ":8080", "", "true", "no"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _field_names(section: str) -> list[str]:
    annotation = Config.model_fields[section].annotation
    fields = getattr(annotation, "model_fields", None)
    return sorted(fields) if fields else ["x"]


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(SECTIONS), max_size=3, unique=True)):
        names = _field_names(section)
        body = draw(st.dictionaries(st.sampled_from(names), values, max_size=3))
        doc[section] = body if draw(st.booleans()) else draw(values)
    return doc


KEYED = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\[\]]*: \S")

_DIR = Path(tempfile.mkdtemp(prefix="nekzus-config-prop-"))


@settings(max_examples=150, deadline=None)
@given(doc=documents())
def test_any_document_loads_or_names_the_bad_key(doc: dict[str, Any]) -> None:
    path = _DIR / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        load_config(str(path), env={})
    except ConfigError as exc:
        assert KEYED.match(str(exc)), str(exc)


@given(text=st.text(max_size=30))
def test_any_file_text_loads_or_raises_config_error(text: str) -> None:
    path = _DIR / "raw.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(str(path), env={})
    except ConfigError as exc:
        assert KEYED.match(str(exc)), str(exc)


UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


part = st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(UNITS)))


@given(parts=st.lists(part, min_size=1, max_size=4))
def test_durations_add_up_their_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    assert parse_duration(text) == pytest.approx(sum(n * UNITS[unit] for n, unit in parts))


@given(seconds=st.integers(0, 10**9))
def test_bare_numbers_are_seconds(seconds: int) -> None:
    assert parse_duration(seconds) == parse_duration(str(seconds)) == float(seconds)


@given(value=st.one_of(st.text(max_size=20), st.floats(), st.integers(), st.booleans(), st.none()))
def test_durations_are_finite_non_negative_or_value_error(value: object) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert math.isfinite(seconds) and seconds >= 0, (value, seconds)


NON_FINITE = [float("nan"), float("inf"), "1e999", "9" * 400 + "h", "nan", "inf", 10**400]


@pytest.mark.parametrize("bad", NON_FINITE, ids=lambda v: str(v)[:8])
def test_non_finite_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_a_huge_duration_in_the_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("health_checks:\n  interval: " + "9" * 400 + "\n")
    with pytest.raises(ConfigError, match=r"^health_checks\.interval: must be a finite duration"):
        load_config(str(path), env={})
    path.write_text("health_checks:\n  interval: .nan\n")
    with pytest.raises(ConfigError, match=r"^health_checks\.interval: must be a finite duration"):
        load_config(str(path), env={})
