"""Lazy iteration over List-style methods (``page_size``/``page_token``/``next_page_token``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def iterate_pages(
    fetch: Callable[[str], Any], items_field: str, *, limit: int | None = None
) -> Iterator[Any]:
    """Yield every item of every page; ``fetch(page_token)`` is called only when the
    previous page is used up, and never again after ``limit`` items."""
    token = ""
    produced = 0
    while True:
        page = fetch(token)
        for item in getattr(page, items_field):
            if limit is not None and produced >= limit:
                return
            produced += 1
            yield item
        token = page.next_page_token
        if not token or (limit is not None and produced >= limit):
            return


async def aiterate_pages(
    fetch: Callable[[str], Awaitable[Any]], items_field: str, *, limit: int | None = None
) -> AsyncIterator[Any]:
    """The async twin of :func:`iterate_pages`."""
    token = ""
    produced = 0
    while True:
        page = await fetch(token)
        for item in getattr(page, items_field):
            if limit is not None and produced >= limit:
                return
            produced += 1
            yield item
        token = page.next_page_token
        if not token or (limit is not None and produced >= limit):
            return
