"""Batch writes for the ingest: one statement per table, whatever the batch size.

On PostgreSQL the rows travel as one JSON document that ``jsonb_to_recordset`` unpacks on the
server: Python only builds plain dicts and calls ``json.dumps`` once, where Django's
``bulk_create`` prepares every value of every row through the field machinery (the largest cost
of an ingest batch in the profile, see docs/benchmarks.md). Other databases (SQLite, for the
tests and the demo) take Django's own bulk methods: same rows, same outcome.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection, models


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} in a batch")


def _document(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"), default=_json_default)


@cache
def _columns(model: type[models.Model], names: tuple[str, ...]) -> str:
    """``x(col type, ...)`` for jsonb_to_recordset, from the model's own column types."""
    fields = {field.attname: field for field in model._meta.concrete_fields}
    typed = ", ".join(f'"{name}" {fields[name].db_type(connection)}' for name in names)
    return f"x({typed})"


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def rows_insert(
    *,
    model: type[models.Model],
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    update: Sequence[str] = (),
    returning: str | None = None,
) -> list[Any]:
    """INSERT every row (dicts keyed by column name); on a ``conflict`` either update the
    ``update`` columns or, without them, skip the row. Returns the ``returning`` column of each
    row written (inserted or updated), in no particular order; [] without ``returning``.
    """
    if not rows:
        return []
    names = tuple(rows[0])
    if not is_postgresql():
        return _rows_insert_django(
            model=model, rows=rows, conflict=conflict, update=update, returning=returning
        )
    action = (
        "DO UPDATE SET " + ", ".join(f'"{name}" = EXCLUDED."{name}"' for name in update)
        if update
        else "DO NOTHING"
    )
    sql = (
        f"INSERT INTO {model._meta.db_table} ({_quoted(names)}) "
        f"SELECT {_quoted(names)} FROM jsonb_to_recordset(%s::jsonb) AS {_columns(model, names)} "
        f"ON CONFLICT ({_quoted(conflict)}) {action}"
    )
    if returning:
        sql += f' RETURNING "{returning}"'
    with connection.cursor() as cursor:
        cursor.execute(sql, [_document(rows)])
        return [row[0] for row in cursor.fetchall()] if returning else []


def rows_update(*, model: type[models.Model], rows: Sequence[dict[str, Any]], key: str) -> None:
    """UPDATE existing rows, matched on the ``key`` column, to the other columns of each dict."""
    if not rows:
        return
    names = tuple(rows[0])
    assigned = [name for name in names if name != key]
    if not is_postgresql():
        objects = [model(**row) for row in rows]
        model.objects.bulk_update(objects, [_field_name(model, n) for n in assigned])
        return
    table = model._meta.db_table
    sql = (
        f"UPDATE {table} SET "
        + ", ".join(f'"{name}" = x."{name}"' for name in assigned)
        + f" FROM jsonb_to_recordset(%s::jsonb) AS {_columns(model, names)}"
        + f' WHERE {table}."{key}" = x."{key}"'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [_document(rows)])


def counts_add(*, model: type[models.Model], column: str, key: str, amounts: dict[str, int]) -> None:
    """Add ``amounts[k]`` to ``column`` of the row whose ``key`` column is k."""
    if not amounts:
        return
    if not is_postgresql():
        by_amount: dict[int, list[str]] = {}
        for value, amount in amounts.items():
            by_amount.setdefault(amount, []).append(value)
        for amount, values in by_amount.items():
            model.objects.filter(**{f"{key}__in": values}).update(**{column: models.F(column) + amount})
        return
    table = model._meta.db_table
    sql = (
        f'UPDATE {table} SET "{column}" = {table}."{column}" + x.amount '
        f"FROM jsonb_to_recordset(%s::jsonb) AS x(k text, amount integer) "
        f'WHERE {table}."{key}" = x.k'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [_document([{"k": k, "amount": n} for k, n in amounts.items()])])


def _field_name(model: type[models.Model], attname: str) -> str:
    for field in model._meta.concrete_fields:
        if field.attname == attname:
            return field.name
    raise LookupError(attname)


def _rows_insert_django(
    *,
    model: type[models.Model],
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    update: Sequence[str],
    returning: str | None,
) -> list[Any]:
    """The same insert through Django (SQLite): what ``RETURNING`` would give is read back."""
    objects = [model(**row) for row in rows]
    if update:
        model.objects.bulk_create(
            objects,
            batch_size=500,
            update_conflicts=True,
            unique_fields=[_field_name(model, n) for n in conflict],
            update_fields=[_field_name(model, n) for n in update],
        )
        return [row[returning] for row in rows] if returning else []
    if returning is None:
        model.objects.bulk_create(objects, batch_size=500, ignore_conflicts=True)
        return []
    # Skip-on-conflict with RETURNING: only the rows that were not there yet.
    (single,) = conflict
    wanted = [row[single] for row in rows]
    existing = set(model.objects.filter(**{f"{single}__in": wanted}).values_list(single, flat=True))
    fresh = [obj for obj, row in zip(objects, rows, strict=True) if row[single] not in existing]
    model.objects.bulk_create(fresh, batch_size=500)
    return [getattr(obj, returning) for obj in fresh]
