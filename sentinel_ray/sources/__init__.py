"""Source adapters, by name."""
from __future__ import annotations

from sentinel_ray.config import Settings
from sentinel_ray.sources.base import HistorySource, Source, SourceError


def make_source(name: str, settings: Settings) -> Source:
    if name == "replay":
        from sentinel_ray.sources.replay import ReplaySource

        return ReplaySource(seed=settings.replay_seed, bad_rate=settings.replay_bad_rate)
    raise SourceError(f"unknown source {name!r}; available: {', '.join(SOURCE_NAMES)}")


SOURCE_NAMES: tuple[str, ...] = ("replay",)


def make_history_source(name: str, settings: Settings) -> HistorySource:
    source = make_source(name, settings)
    if not isinstance(source, HistorySource):
        raise SourceError(f"source {name!r} offers no history to backfill from")
    return source
