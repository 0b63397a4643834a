"""The ``get_all_records_where`` expression grammar: ``field "x" = "y"`` with and/or/not,
parentheses and true/false, compiled to a predicate over records."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import XapiError

_TOKEN = re.compile(r'\s*(?:(\()|(\))|(=)|"((?:[^"\\]|\\.)*)"|([A-Za-z_]+))')


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise XapiError("INVALID_VALUE", "expr", expr)
        pos = m.end()
        if m.group(1):
            out.append(("(", "("))
        elif m.group(2):
            out.append((")", ")"))
        elif m.group(3):
            out.append(("=", "="))
        elif m.group(4) is not None:
            out.append(("str", re.sub(r"\\(.)", r"\1", m.group(4))))
        else:
            out.append(("word", m.group(5).lower()))
    return out


def as_text(value: Any) -> str:
    """The string form used in comparisons (booleans as "true"/"false")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


Predicate = Callable[[dict[str, Any]], bool]


def compile_where(expr: str) -> Predicate:
    """Compile ``field "x" = "y" and not (...)`` into a predicate over records."""
    toks = _tokens(expr)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def take(kind: str, text: str | None = None) -> str:
        nonlocal pos
        tok = peek()
        if tok is None or tok[0] != kind or (text is not None and tok[1] != text):
            raise XapiError("INVALID_VALUE", "expr", expr)
        pos += 1
        return tok[1]

    def atom() -> Predicate:
        tok = peek()
        if tok == ("(", "("):
            take("(")
            inner = disj()
            take(")")
            return inner
        if tok == ("word", "not"):
            take("word")
            inner = atom()
            return lambda r: not inner(r)
        if tok == ("word", "true"):
            take("word")
            return lambda r: True
        if tok == ("word", "false"):
            take("word")
            return lambda r: False
        if tok == ("word", "field"):
            take("word")
            name = take("str")
            take("=")
            return _compare(name, take("str"))
        raise XapiError("INVALID_VALUE", "expr", expr)

    def conj() -> Predicate:
        left = atom()
        while peek() == ("word", "and"):
            take("word")
            right = atom()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def disj() -> Predicate:
        left = conj()
        while peek() == ("word", "or"):
            take("word")
            right = conj()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    if not toks:
        return lambda r: True
    result = disj()
    if pos != len(toks):
        raise XapiError("INVALID_VALUE", "expr", expr)
    return result


def _compare(column: str, literal: str) -> Predicate:
    if "__" in column:
        head, _, key = column.partition("__")
        field = f"{head}_{key}"

        def pred(rec: dict[str, Any]) -> bool:
            if field in rec:
                return as_text(rec[field]) == literal
            value = rec.get(head)
            return isinstance(value, dict) and value.get(key) == literal

        return pred
    return lambda rec: as_text(rec.get(column, "")) == literal
