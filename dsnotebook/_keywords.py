"""Keyword arguments checked by name, so that a misspelt option names the one that was meant.

Python's own error for ``connect(url, concurency=2)`` says only "got an unexpected keyword
argument". :func:`suggest_keywords` wraps a function with explicit keyword parameters and answers
with the nearest valid name instead. The wrapper keeps the function's signature: ``help()`` and
``inspect.signature`` follow ``__wrapped__``, and type checkers see the same parameters.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["suggest_keywords"]

P = ParamSpec("P")
R = TypeVar("R")

_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def suggest_keywords(func: Callable[P, R], *, called: str | None = None) -> Callable[P, R]:
    """Wrap ``func`` so that an unknown keyword argument raises a ``TypeError`` that suggests
    the nearest valid name (by :func:`difflib.get_close_matches`) and lists them all.

    ``func`` must not take ``**kwargs``: every keyword it accepts is a named parameter.
    ``called`` is the name the message gives the function (by default its own; ``Hub`` for
    ``Hub.__init__``).
    """
    parameters = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        raise TypeError(f"{func.__qualname__} takes **kwargs; its keywords cannot be checked by name")
    names = [name for name, p in parameters.items() if p.kind in _BY_NAME and name != "self"]
    # "Hub.__init__" is called as "Hub()", "connect" as "connect()".
    called = called or func.__qualname__.removesuffix(".__init__")

    @functools.wraps(func)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        for name in kwargs:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else "."
                raise TypeError(
                    f"{called}() got an unexpected keyword argument {name!r}{hint} "
                    f"Valid keyword arguments: {', '.join(names)}"
                )
        return func(*args, **kwargs)

    return checked
