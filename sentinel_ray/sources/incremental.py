"""Where an incrementally read stream was left: a high-water mark, in the spirit of dlt's `Incremental`.

Every item of a stream carries a cursor value that only grows (a creation time, a message
id). The cursor a poll stores is the largest value it emitted and, where items can share a
value (two posts in one second), the ids emitted at exactly that value: the boundary. The
next poll starts from that mark:

    mark = Incremental.load(cursor)                # or Incremental(value, ids)
    for item in listing:                           # newest first, say
        if mark.is_older(item.ts):
            break                                  # emitted by an earlier poll, and so is the rest
        if mark.is_new(item.ts, item.id):
            mark.emit(item.ts, item.id)
    next_cursor = mark.dump()                      # {"ts": newest emitted, "ids": ids at it}

`is_new` and `is_older` compare with the mark the poll started from; `emit` moves the mark
to the largest value emitted, keeping the ids at it (those already at the start's value
too). Values are anything ordered (float seconds, datetimes, ints); an adapter whose cursor
has another shape on the wire builds the mark from its own fields and stores
`last_value` / `last_ids` back.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class Incremental(Generic[V]):
    """The high-water mark of one stream through one poll (see the module doc)."""

    def __init__(self, start: V | None = None, ids_at_start: Iterable[str] = ()) -> None:
        ids = list(ids_at_start) if start is not None else []
        self.start_value = start
        self._start_ids = frozenset(ids)
        self.last_value = start
        self._last_ids = dict.fromkeys(ids)  # ordered: the start's ids first, then as emitted
        self.emitted_ids: set[str] = set()  # every id emitted this poll (for listings that shift while paging)

    @classmethod
    def load(cls, state: Mapping[str, Any] | None, *, value: str = "ts", ids: str = "ids",
             decode: Callable[[Any], V] | None = None) -> Incremental[V]:
        """The mark stored as {value: <cursor value>, ids: [...]}; no mark when `state` is empty."""
        if not state or state.get(value) is None:
            return cls()
        raw = state[value]
        return cls(decode(raw) if decode else raw, state.get(ids) or ())

    def dump(self, *, value: str = "ts", ids: str = "ids",
             encode: Callable[[V], Any] | None = None) -> dict[str, Any] | None:
        """The mark as `load` reads it (ids sorted); None when there is none yet."""
        if self.last_value is None:
            return None
        return {value: encode(self.last_value) if encode else self.last_value, ids: sorted(self._last_ids)}

    @property
    def last_ids(self) -> list[str]:
        """The ids emitted at `last_value`, the start's first, then in the order emitted."""
        return list(self._last_ids)

    @property
    def moved(self) -> bool:
        """Whether this poll emitted anything past the start (the mark to store differs)."""
        return self.last_value != self.start_value or len(self._last_ids) != len(self._start_ids)

    def is_new(self, value: V, item_id: str | None = None) -> bool:
        """Past the start: a newer value, or the start's value with an id not emitted at it.
        Without an id, the start's value itself is not new (the value alone identifies the item)."""
        start = self.start_value
        if start is None or value > start:  # type: ignore[operator]
            return True
        return value == start and item_id is not None and item_id not in self._start_ids

    def is_older(self, value: V) -> bool:
        """Before the start: in a newest-first listing, this and all that follows was emitted before."""
        return self.start_value is not None and value < self.start_value  # type: ignore[operator]

    def emit(self, value: V, item_id: str | None = None) -> None:
        """Note an item as emitted (or, without an id, a value the service says it has reached)."""
        if item_id is not None:
            self.emitted_ids.add(item_id)
        if self.last_value is None or value > self.last_value:  # type: ignore[operator]
            self.last_value = value
            self._last_ids = {} if item_id is None else {item_id: None}
        elif value == self.last_value and item_id is not None:
            self._last_ids.setdefault(item_id, None)
