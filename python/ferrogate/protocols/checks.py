"""The small checks every ingress validator is made of, one definition each.

A refusal is a 400 ``invalid_value`` naming the JSON path (:func:`bad`); types are tested exactly (a bool is
not an integer, an integral float is not an integer). Used by the chat validator
(:mod:`ferrogate.pipeline.validate`) and the Anthropic, Responses and embeddings ones in this package.

Example:
    >>> try:
    ...     integer("n", True, 1, 128)
    ... except GatewayError as err:
    ...     print(err.param, "|", err.message)
    n | 'n' must be an integer between 1 and 128, got boolean
"""

from __future__ import annotations

from typing import Any

from ferrogate.errors import ErrorKind, GatewayError

_JSON_KINDS = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}
#: The largest token count taken from an upstream (beyond it the upstream's number is not believed).
MAX_TOKENS = 2**53


def bad(param: str, message: str) -> GatewayError:
    """A 400 ``invalid_value`` naming ``param``."""
    return GatewayError(ErrorKind.INVALID_FIELD, message, param=param)


def kind(value: Any) -> str:
    """The JSON type name of ``value`` (``null``, ``string``, ``array``...), for messages."""
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)


def string(field: str, value: Any, most: int | None = None) -> str:
    """``value`` must be a string, of at most ``most`` characters when given; returns it."""
    if type(value) is not str:
        raise bad(field, f"'{field}' must be a string, got {kind(value)}")
    if most is not None and len(value) > most:
        raise bad(field, f"'{field}' must be at most {most} characters, got {len(value)}")
    return value


def integer(field: str, value: Any, low: int, high: int) -> None:
    """``value`` must be an integer in ``low..high``."""
    if type(value) is not int or not low <= value <= high:
        got = value if type(value) in (int, float) else kind(value)
        raise bad(field, f"'{field}' must be an integer between {low} and {high}, got {got}")


def number(field: str, value: Any, low: float, high: float) -> None:
    """``value`` must be a number (an integer or a float) in ``low..high``."""
    if type(value) not in (int, float) or not low <= value <= high:
        got = value if type(value) in (int, float) else kind(value)
        raise bad(field, f"'{field}' must be a number between {low:g} and {high:g}, got {got}")


def boolean(field: str, value: Any) -> None:
    """``value`` must be ``true`` or ``false``."""
    if type(value) is not bool:
        raise bad(field, f"'{field}' must be a boolean, got {kind(value)}")


def obj(field: str, value: Any) -> dict[str, Any]:
    """``value`` must be a JSON object; returns it."""
    if type(value) is not dict:
        raise bad(field, f"'{field}' must be an object, got {kind(value)}")
    return value


def array(field: str, value: Any, most: int) -> list[Any]:
    """``value`` must be an array of at most ``most`` items; returns it."""
    if type(value) is not list:
        raise bad(field, f"'{field}' must be an array, got {kind(value)}")
    if len(value) > most:
        raise bad(field, f"'{field}' must hold at most {most} items, got {len(value)}")
    return value


def tokens(value: Any) -> int:
    """``value`` when it is a token count the store can hold, else 0: an upstream's bad number (of the wrong
    type, negative, beyond 2**53) must not break the answer or the record.

    Example:
        >>> tokens(7), tokens(-1), tokens("7"), tokens(True)
        (7, 0, 0, 0)
    """
    return value if type(value) is int and 0 <= value <= MAX_TOKENS else 0
