"""Every poll in these tests is also replayed from its raw payloads.

Each adapter's `fetch` and `fetch_history` is wrapped (for the tests of this folder) so that
what it returns is checked against a replay from the raw zone (`helpers.assert_replays`):
the records of the poll must be exactly what its adapter's registered parser makes of the
payloads it kept. So every scenario these tests serve (first polls, cursors, pages that shift,
unreadable pages, fuzzed payloads) checks lineage and replay too, not only the few tests that
say so.
"""
from __future__ import annotations

import functools
from typing import Any, Iterator

import pytest

from sentinel_ray.sources import SOURCE_NAMES, source_class
from tests.sources.helpers import assert_replays


def _replayed(method: Any, name: str) -> Any:
    @functools.wraps(method)
    async def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = await method(self, *args, **kwargs)
        assert_replays(name, result)
        return result

    return checked


@pytest.fixture(autouse=True)
def polls_replay_from_their_raw_payloads(request: pytest.FixtureRequest,
                                         monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from sentinel_ray.sources.replay import LiveReplaySource

    if request.node.get_closest_marker("no_replay_check"):
        yield  # a test that times the event loop: the check would parse on it
        return
    for cls in [source_class(name) for name in SOURCE_NAMES] + [LiveReplaySource]:
        for method in ("fetch", "fetch_history"):
            if method in vars(cls):
                monkeypatch.setattr(cls, method, _replayed(vars(cls)[method], cls.name))
    yield


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_replay_check: its polls are not replayed from their raw payloads "
                                       "(a test that times the event loop)")
