"""Source adapters, by name, and the parsers of their kept raw payloads (`parser_for`).
Modules load only when their source is used."""
from __future__ import annotations

import importlib
from typing import Callable

from sentinel_ray.config import Settings
from sentinel_ray.records import RawPayload, SourceError
from sentinel_ray.sources.base import HistorySource, Source
from sentinel_ray.sources.lineage import ParsedPayload

# name -> "module:Class"; one module per source.
SOURCE_CLASSES: dict[str, str] = {
    "replay": "sentinel_ray.sources.replay:ReplaySource",
    "yahoo": "sentinel_ray.sources.yahoo:YahooSource",
    "nse": "sentinel_ray.sources.nse:NseSource",
    "filings": "sentinel_ray.sources.filings:FilingsSource",
    "reddit": "sentinel_ray.sources.reddit:RedditSource",
    "x": "sentinel_ray.sources.x:XSource",
    "telegram": "sentinel_ray.sources.telegram:TelegramSource",
    "youtube": "sentinel_ray.sources.youtube:YouTubeSource",
    "rss": "sentinel_ray.sources.rss:RssSource",
}
SOURCE_NAMES: tuple[str, ...] = tuple(SOURCE_CLASSES)


def source_class(name: str) -> type[Source]:
    try:
        module_name, class_name = SOURCE_CLASSES[name].split(":")
    except KeyError:
        raise SourceError(f"unknown source {name!r}; available: {', '.join(SOURCE_NAMES)}") from None
    return getattr(importlib.import_module(module_name), class_name)


def make_source(name: str, settings: Settings) -> Source:
    return source_class(name).from_settings(settings)


def make_history_source(name: str, settings: Settings) -> HistorySource:
    source = make_source(name, settings)
    if not isinstance(source, HistorySource):
        raise SourceError(f"source {name!r} offers no history to backfill from")
    return source


def make_stream_source(name: str, settings: Settings) -> Source:
    """The source as a poller drives it: the replay plays live instead of day by day."""
    if name == "replay":
        from sentinel_ray.sources.replay import LiveReplaySource

        return LiveReplaySource.from_settings(settings)
    return make_source(name, settings)


# name -> "module:function": the function every poll of the source reads its payloads with,
# for reading kept payloads again (a replay from the raw zone); see `lineage`.
PARSERS: dict[str, str] = {
    "replay": "sentinel_ray.sources.replay:parse_payload",  # ReplaySource's and LiveReplaySource's
    "yahoo": "sentinel_ray.sources.yahoo:parse_payload",
    "nse": "sentinel_ray.sources.nse:parse_payload",
    "filings": "sentinel_ray.sources.filings:parse_payload",
    "reddit": "sentinel_ray.sources.reddit:parse_payload",
    "x": "sentinel_ray.sources.x:parse_payload",
    "telegram": "sentinel_ray.sources.telegram:parse_payload",
    "youtube": "sentinel_ray.sources.youtube:parse_payload",
    "rss": "sentinel_ray.sources.rss:parse_payload",
}
Parser = Callable[[RawPayload], ParsedPayload]


def parser_for(name: str) -> Parser:
    """The records of one raw payload the source `name` received: `parser(payload)` -> dataset
    name -> table (with `raw_id` and `raw_pos`), exactly what the poll that received it emitted
    (its `unparseable` attribute lists the records that could not be read). An unreadable
    payload raises `parsing.UnreadablePayload`."""
    try:
        module_name, function = PARSERS[name].split(":")
    except KeyError:
        raise SourceError(f"unknown source {name!r}; available: {', '.join(SOURCE_NAMES)}") from None
    return getattr(importlib.import_module(module_name), function)
