"""The interface every source adapter implements.

A poller (continuous ingestion) and a backfill both drive an adapter the same way:
`fetch(cursor)` returns what the service sent (raw, byte for byte), the canonical
records parsed from it (one Arrow table per dataset) and the cursor for the next call.
"""
from __future__ import annotations

import abc
import datetime as dt
from typing import Any, ClassVar

from sentinel_ray.config import SourceSettings, env_name
from sentinel_ray.records import FetchResult, MissingCredentials


def require_secrets(source: str, settings: SourceSettings) -> dict[str, str]:
    """The values of the source's secrets (by field name), or a MissingCredentials naming each env var unset."""
    values, missing = {}, []
    for name, setting in settings.secret_fields().items():
        secret = getattr(settings, name)
        value = secret.get_secret_value() if secret is not None else ""
        if not value:
            missing.append(env_name(setting))
        values[name] = value
    if missing:
        raise MissingCredentials(f"source {source!r} needs {', '.join(missing)} (set in the environment or the "
                                 f"config file); it will not start without")
    return values


class Source(abc.ABC):
    """A source adapter. Subclasses set `name` and `datasets` and implement `fetch`.

    An adapter is built from its own typed settings (`settings_class`, e.g. `NseSettings`);
    `from_settings` builds it from the platform settings. `credentials` names the settings
    the source cannot start without: the secrets of its `settings_class`.
    """

    name: str = ""
    datasets: tuple[str, ...] = ()
    credentials: tuple[str, ...] = ()
    settings_class: ClassVar[type[SourceSettings] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.settings_class is not None:
            cls.credentials = cls.settings_class.credentials()

    @classmethod
    def from_settings(cls, settings: Any) -> "Source":
        if cls.settings_class is None:
            raise NotImplementedError(f"{cls.__name__} cannot be built from settings")
        return cls(cls.settings_class.of(settings))  # type: ignore[call-arg]

    @abc.abstractmethod
    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        """Fetch everything new since `cursor` (None: from the source's default start)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; adapters holding sessions override this."""


class HistorySource(Source):
    """A source that can also return a whole past day, for backfills."""

    @abc.abstractmethod
    async def fetch_history(self, day: dt.date, *, run_id: str, ingested_at: dt.datetime) -> FetchResult:
        """Everything the service has for one UTC day."""
