"""The one metadata every domain's tables hang off (so the migrations see one schema), and the shared
helpers for column defaults."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, Self

from sqlalchemy import Column, DateTime, Dialect, MetaData, Row, String, Table, Text, TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, stored as UTC and always read back as an aware UTC datetime.

    SQLite keeps no zone: a plain `DateTime(timezone=True)` hands back naive values, which then compare
    wrongly with aware ones and read as local time in `.timestamp()`. Converting here, once, spares every
    domain from guessing. A naive value written is taken to be UTC already."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Record:
    """Base of a domain's frozen dataclass records read from its tables: `from_row` fills each field
    from the selected column of the same name (the row may carry more columns than the record)."""

    __slots__ = ()

    @classmethod
    def from_row(cls, row: Row[Any]) -> Self:
        values = row._mapping
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # subclasses are dataclasses
        return cls(**{field.name: values[field.name] for field in fields})


# Small persisted facts about this instance (its nexusId, the setup state...). Never secrets.
system_settings = Table(
    "system_settings",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UtcDateTime(), default=utcnow, onupdate=utcnow),
)
