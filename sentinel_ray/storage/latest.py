"""The latest-value cache in Redis: what the API's hottest reads need, without the warehouse.

Per ticker and exchange (field `TICKER|EXCHANGE` of four hashes under `<prefix>:latest:<database>:`):

    bars         1m bars stored (an integer, moved by the change each roll-up refresh made)
    bar          the newest bar: {"close", "ts"}
    risk         the newest risk_1m row, as the risk route answers it
    open_alerts  alerts not closed

Writers (ingest/serving.py) update it as they store, after the warehouse has the rows, so
it trails the warehouse by at most the batch being stored. Every update is idempotent: the
bar and risk are replaced only by a newer or equal time, alert counts are absolute, and a
bar-count change is applied once per batch key (`applied`, a week of keys), so a batch
stored again after a crash, with its deltas recomputed, is not counted twice.

`ready` marks a cache built from the warehouse. Without it (a new or flushed Redis, or
`invalidate` when `up` starts) writers leave the cache alone and the first read rebuilds it
whole (`replace_all`) under the writers' lock.

`version` (with `ready`: `version()`) moves once per batch a writer finishes (`touch`) and
at every rebuild, and each move is published on `channel`: the API keeps rendered
responses until it moves (serve/response_cache.py), watching the channel rather than
asking Redis at every request (serve/reads.VersionWatch).
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable

import redis
import redis.asyncio as aioredis

from sentinel_ray.market import as_utc

APPLIED_KEEP_MS = 7 * 24 * 3600 * 1000

# KEYS: ready, applied, bars, bar; ARGV: batch key, now (ms), then per ticker: field, bars
# change, newest bar's time (ms, or "" when the refresh left none), its JSON
_APPLY_BARS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1]) == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
for i = 4, #ARGV, 4 do
  local field, delta, ms, bar = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  if delta ~= 0 then redis.call('HINCRBY', KEYS[3], field, delta) end
  if ms ~= '' then
    local current = redis.call('HGET', KEYS[4], field)
    if not current or cjson.decode(current)['ts_ms'] <= tonumber(ms) then redis.call('HSET', KEYS[4], field, bar) end
  end
end
return 1
"""

# KEYS: ready, hash; ARGV: pairs of field and JSON with a ts_ms: kept when not older
_PUT_NEWER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[2], ARGV[i])
  if not current or cjson.decode(current)['ts_ms'] <= cjson.decode(ARGV[i + 1])['ts_ms'] then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""

# KEYS: ready, hash; ARGV: pairs of field and value ("": remove the field), only in a built cache
_PUT_IF_READY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[2], ARGV[i]) else redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
return 1
"""


def field(ticker: str, exchange: str) -> str:
    return f"{ticker}|{exchange}"


def _ms(moment: dt.datetime) -> int:
    return int(as_utc(moment).timestamp() * 1000)


def _json(row: dict[str, Any], ts: dt.datetime) -> str:
    out = {k: as_utc(v).isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}
    return json.dumps({**out, "ts_ms": _ms(ts)}, separators=(",", ":"))


def _version(ready: bytes | None, counter: bytes | None) -> str | None:
    """The build (its time, in `ready`) and the updates since: a counter alone could repeat
    after Redis lost the keys and the cache was rebuilt."""
    return None if ready is None else f"{ready.decode()}#{int(counter or 0)}"


def _decoded(text: bytes | str) -> dict[str, Any]:
    row = json.loads(text)
    row.pop("ts_ms", None)
    return row


class LatestCache:
    def __init__(self, client: redis.Redis, prefix: str, database: str) -> None:
        """Keys under `<prefix>:latest:<database>:`: the cache of one warehouse database."""
        self.redis = client
        self.channel = f"{prefix}:latest:{database}:changed"  # a message at every version move
        self.key = {name: f"{prefix}:latest:{database}:{name}" for name in
                    ("ready", "applied", "bars", "bar", "risk", "open_alerts", "version")}
        self._apply_bars = client.register_script(_APPLY_BARS)
        self._put_newer = client.register_script(_PUT_NEWER)
        self._put_if_ready = client.register_script(_PUT_IF_READY)

    # -- writing ---------------------------------------------------------------------
    def apply_bars(self, batch_key: str, changes: Iterable[dict[str, Any]]) -> bool:
        """Apply a roll-up refresh's per-ticker changes (ticker, exchange, bars_delta, close,
        last_ts) once for `batch_key`; False when the cache is not built or the key was applied."""
        argv: list[Any] = []
        for c in changes:
            last = c.get("last_ts")
            argv += [field(c["ticker"], c["exchange"]), int(c["bars_delta"]), "" if last is None else _ms(last),
                     "" if last is None else _json({"close": c["close"], "ts": last}, last)]
        now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
        return self._apply_bars(keys=[self.key["ready"], self.key["applied"], self.key["bars"], self.key["bar"]],
                                args=[batch_key, now_ms, APPLIED_KEEP_MS, *argv]) == 1

    def put_bars(self, rows: Iterable[dict[str, Any]]) -> None:
        """Replace the newest bar of these tickers (after a refresh emptied buckets: the bar may
        now be an older one); rows: ticker, exchange, last_close, last_ts (None: no bars left)."""
        argv = []
        for r in rows:
            value = "" if r["last_ts"] is None else _json({"close": r["last_close"], "ts": r["last_ts"]}, r["last_ts"])
            argv += [field(r["ticker"], r["exchange"]), value]
        if argv:
            self._put_if_ready(keys=[self.key["ready"], self.key["bar"]], args=argv)

    def put_risk(self, rows: Iterable[dict[str, Any]]) -> None:
        """Risk rows (risk_1m columns), each kept unless the cache has a newer one for its ticker."""
        argv = []
        for r in rows:
            argv += [field(r["ticker"], r["exchange"]), _json(r, r["ts"])]
        if argv:
            self._put_newer(keys=[self.key["ready"], self.key["risk"]], args=argv)

    def put_open_alerts(self, counts: dict[tuple[str, str], int]) -> None:
        argv = []
        for (ticker, exchange), n in counts.items():
            argv += [field(ticker, exchange), int(n)]
        if argv:
            self._put_if_ready(keys=[self.key["ready"], self.key["open_alerts"]], args=argv)

    def replace_all(self, totals: list[dict[str, Any]], risks: list[dict[str, Any]],
                    open_alerts: dict[tuple[str, str], int]) -> None:
        """The whole cache from the warehouse's answers, in one transaction, then `ready`."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(*(key for name, key in self.key.items() if name != "version"))
        bars = {field(r["ticker"], r["exchange"]): int(r["bars"]) for r in totals}
        bar = {field(r["ticker"], r["exchange"]): _json({"close": r["last_close"], "ts": r["last_ts"]}, r["last_ts"])
               for r in totals if r["last_ts"] is not None}
        risk = {field(r["ticker"], r["exchange"]): _json(r, r["ts"]) for r in risks}
        alerts = {field(t, ex): int(n) for (t, ex), n in open_alerts.items()}
        for name, mapping in (("bars", bars), ("bar", bar), ("risk", risk), ("open_alerts", alerts)):
            if mapping:
                pipe.hset(self.key[name], mapping=mapping)
        pipe.set(self.key["ready"], dt.datetime.now(dt.timezone.utc).isoformat())
        pipe.incr(self.key["version"])
        pipe.publish(self.channel, b"rebuilt")
        pipe.execute()

    def touch(self) -> None:
        """Move the version, once a writer has finished a batch (whatever it changed, in the
        cache or only in the warehouse): responses read before are not answers any more
        (serve/response_cache.py). Once per batch, not per update: every move makes each
        kept response be read again. Readers that watch `channel` learn of it at once."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.incr(self.key["version"])
        pipe.publish(self.channel, b"touched")
        pipe.execute()

    def invalidate(self) -> None:
        """Drop `ready`: the next read rebuilds the cache from the warehouse."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.key["ready"])
        pipe.publish(self.channel, b"invalidated")
        pipe.execute()

    # -- reading (the API, on its event loop: redis.asyncio) -----------------------------
    def is_ready(self) -> bool:
        return bool(self.redis.exists(self.key["ready"]))

    async def version(self, client: aioredis.Redis) -> str | None:
        """Text that changes with every update of the cache, and with every rebuild (None when
        it is not built): readers keep what they rendered from it until it moves."""
        # one MGET (atomic, a third of a MULTI pipeline's cost): every kept response asks this
        return _version(*await client.mget(self.key["ready"], self.key["version"]))

    async def stocks(self, client: aioredis.Redis) -> tuple[str, dict[tuple[str, str], dict[str, Any]]] | None:
        """(the version read, per (ticker, exchange): bars, last_close, last_ts, risk (row or
        None), open_alerts); None when the cache is not built."""
        async with client.pipeline(transaction=True) as pipe:
            pipe.get(self.key["ready"])
            pipe.get(self.key["version"])
            for name in ("bars", "bar", "risk", "open_alerts"):
                pipe.hgetall(self.key[name])
            ready, version, bars, bar, risk, alerts = await pipe.execute()
        if not ready:
            return None
        out: dict[tuple[str, str], dict[str, Any]] = {}

        def entry(name: bytes) -> dict[str, Any]:
            ticker, _, exchange = name.decode().partition("|")
            return out.setdefault((ticker, exchange), {"bars": 0, "last_close": None, "last_ts": None, "risk": None,
                                                       "open_alerts": 0})
        for name, value in bars.items():
            entry(name)["bars"] = int(value)
        for name, value in bar.items():
            row = _decoded(value)
            entry(name).update(last_close=row["close"], last_ts=row["ts"])
        for name, value in risk.items():
            entry(name)["risk"] = _decoded(value)
        for name, value in alerts.items():
            entry(name)["open_alerts"] = int(value)
        return _version(ready, version), out

    async def risk(self, client: aioredis.Redis, ticker: str, exchange: str) -> tuple[bool, dict[str, Any] | None]:
        """(built, the newest risk row or None)."""
        async with client.pipeline(transaction=True) as pipe:
            pipe.exists(self.key["ready"])
            pipe.hget(self.key["risk"], field(ticker, exchange))
            ready, value = await pipe.execute()
        return bool(ready), (_decoded(value) if ready and value else None)
