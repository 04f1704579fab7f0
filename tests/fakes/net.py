"""Local networking helpers for tests: free ports, and Ray Serve apps on 127.0.0.1."""
from __future__ import annotations

import contextlib
import socket
import time
from typing import Any, Iterator


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_locally(app: Any, *, name: str, ready_path: str, timeout_s: float = 60) -> Iterator[str]:
    """Run a Serve application on a free 127.0.0.1 port until `ready_path` answers 200;
    yield its base URL; shut Serve down afterwards."""
    import requests
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"enable_access_log": False})
    serve.run(app, name=name, route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}{ready_path}", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    else:
        serve.shutdown()
        raise AssertionError(f"{name} did not answer {ready_path} within {timeout_s:.0f}s")
    try:
        yield base
    finally:
        serve.shutdown()
