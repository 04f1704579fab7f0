"""`sentinel-ray sources list|check`: what each source needs, and whether it works from here."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sentinel_ray.config import Settings, env_name
from sentinel_ray.records import MissingCredentials, SourceError
from sentinel_ray.sources import SOURCE_NAMES, source_class
from sentinel_ray.sources.base import Source

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class SourceStatus:
    name: str
    datasets: tuple[str, ...]
    needs: tuple[str, ...]  # env vars of required credentials
    configured: bool
    problem: str = ""


def list_sources(settings: Settings) -> list[SourceStatus]:
    out = []
    for name in SOURCE_NAMES:
        try:
            cls = source_class(name)
        except ImportError as e:
            out.append(SourceStatus(name, (), (), False, f"cannot load: {e}"))
            continue
        needs = tuple(env_name(c) for c in cls.credentials)
        missing = [c for c in cls.credentials if getattr(settings, c) is None
                   or not getattr(settings, c).get_secret_value()]
        out.append(SourceStatus(name, tuple(cls.datasets), needs, not missing,
                                f"missing {', '.join(env_name(c) for c in missing)}" if missing else ""))
    return out


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    summary: str


def quick_settings(settings: Settings, timeout_s: float) -> Settings:
    """Settings for one small fetch: the first watched ticker, one page, one attempt, short requests.

    Requests get at most a quarter of the check's time: a source whose fetch runs in a
    worker thread (Yahoo, through yfinance) cannot be cancelled there, and only ends its
    current call when that call's own timeout is spent; so a check lasts at most its
    timeout plus that quarter.
    """
    return settings.model_copy(update={
        "watch_tickers": settings.watch_tickers[:1], "page_cap": 1, "http_max_attempts": 1,
        "http_timeout_s": min(settings.http_timeout_s, max(timeout_s / 4, 0.1))})


async def check_source(name: str, settings: Settings, timeout_s: float = CHECK_TIMEOUT_S) -> CheckResult:
    """Build the source (config and credentials), then make one small live fetch. Never raises:
    every outcome is a CheckResult whose summary says what happened."""
    try:
        source = source_class(name).from_settings(quick_settings(settings, timeout_s))
    except MissingCredentials as e:
        return CheckResult(name, False, f"not configured: {e}")
    except (SourceError, ValueError, ImportError) as e:
        return CheckResult(name, False, f"invalid configuration: {e}")
    try:
        result = await asyncio.wait_for(source.fetch(None), timeout_s)
    except asyncio.TimeoutError:
        return CheckResult(name, False, f"configuration ok; no answer within {timeout_s:.0f}s "
                                        f"(no network from here, or the service is slow)")
    except SourceError as e:
        return CheckResult(name, False, f"configuration ok; live fetch failed: {e}")
    except OSError as e:
        return CheckResult(name, False, f"configuration ok; network unavailable: {e}")
    except Exception as e:  # noqa: BLE001 - a check reports, it does not crash the command
        return CheckResult(name, False, f"configuration ok; live fetch failed unexpectedly: "
                                        f"{type(e).__name__}: {e}")
    finally:
        await _close_quietly(source)
    if not result.raw:  # nothing was even asked: e.g. no channels or feeds configured
        return CheckResult(name, True, "ok, but nothing to fetch: check what it is set to watch "
                                       "(e.g. telegram_channels, rss_feeds, watch_tickers)")
    rows = ", ".join(f"{ds}={t.num_rows}" for ds, t in result.records.items()) or "no records"
    unreadable = (result.meta.get("unreadable") or []) if isinstance(result.meta, dict) else []
    if unreadable:  # the others were read: working, but say which answer was not
        rows += f"; {len(unreadable)} could not be read (first: {str(unreadable[0].get('error'))[:200]})"
    return CheckResult(name, True, f"ok: {len(result.raw)} payloads, {rows}")


async def _close_quietly(source: Source) -> None:
    try:
        await source.close()
    except Exception as e:  # noqa: BLE001 - the check's outcome is already decided
        log.warning("closing source %s after its check failed: %s", source.name, e)
