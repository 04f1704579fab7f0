"""Follow a listing's pages: next-page tokens or offsets, up to a page limit.

    pager = Pager(fetch, next_token, limit=page_cap)
    async for page in pager:
        ...                      # break once the rest is known to be old: no further request
    if pager.truncated:
        ...                      # the limit stopped it with pages still to come

`fetch(token)` requests one page: `first` (None unless given) for the first, then what
`next_token(page)` said. `next_token` is asked only when the next page is wanted, after the
loop body has handled `page`, so a token may come from what the body did (Telegram: the
newest message id emitted). None from it ends the listing; so does, with
`stop_on_repeat`, a token given before (a service that hands out the same token again).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")  # a page token: a string, an offset, an id
P = TypeVar("P")  # a fetched page


class Pager(Generic[T, P]):
    """An async iterator over the pages of one listing (see the module doc)."""

    def __init__(self, fetch: Callable[[T | None], Awaitable[P]], next_token: Callable[[P], T | None], *,
                 limit: int, first: T | None = None, stop_on_repeat: bool = False) -> None:
        if limit < 1:
            raise ValueError("a pager needs a limit of at least one page")
        self._fetch, self._next_token, self.limit = fetch, next_token, limit
        self._token, self._stop_on_repeat = first, stop_on_repeat
        self._seen: set[T] = set()
        self._page: P | None = None
        self._done = False
        self.pages = 0  # fetched so far
        self.truncated = False  # the limit ended the listing while it had a next page

    def __aiter__(self) -> Pager[T, P]:
        return self

    async def __anext__(self) -> P:
        if self._done:
            raise StopAsyncIteration
        if self.pages:
            token = self._next_token(self._page)  # type: ignore[arg-type]
            if token is None or (self._stop_on_repeat and token in self._seen):
                self._done = True
                raise StopAsyncIteration
            self._seen.add(token)
            if self.pages >= self.limit:
                self._done = self.truncated = True
                raise StopAsyncIteration
            self._token = token
        self._page = await self._fetch(self._token)
        self.pages += 1
        return self._page
