"""Offline simulator of the NSE cash market and the chatter around it.

`ReplaySource` plays a service that answers "everything for one UTC day": 1-minute
bars for every symbol and social/news posts, with pump-and-dump episodes and a known
number of bad records of each kind, so the whole platform (validation, features,
alerts) can be exercised and checked against ground truth with no network.
`LiveReplaySource` plays the same market as a live feed, for continuous ingestion.

Modules, each importing only those above it: `simulator` (the market: walks, bars),
`chatter` (posts and filings), `episodes` (pumps and hard negatives: the ground truth),
`faults` (bad records and their expected rejects),
`tables` (records tables), `wire` (NDJSON bodies), `source` (`ReplaySource`, and
`parse_payload`: its payloads read back into records),
`live` (`LiveReplaySource`).
"""
from sentinel_ray.sources.replay.live import LiveReplaySource
from sentinel_ray.sources.replay.source import ReplaySource, parse_payload

__all__ = ["LiveReplaySource", "ReplaySource", "parse_payload"]
