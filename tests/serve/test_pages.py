"""The dashboard page, its assets and the API docs come out of installed packages: every file the
page names is served, nothing names a host, nothing outside the dashboard folder is reachable."""
from __future__ import annotations

import asyncio
import re

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from sentinel_ray.serve import pages


def _get(coroutine) -> tuple[int, str, bytes]:
    response = asyncio.run(coroutine)
    return response.status_code, response.media_type, response.body


def _request(root_path: str = "") -> Request:
    return Request({"type": "http", "method": "GET", "path": "/docs", "root_path": root_path, "headers": [],
                    "query_string": b""})


def test_the_page_and_every_file_it_names_are_served_from_the_package() -> None:
    status, media, body = _get(pages.dashboard())
    assert status == 200 and media.startswith("text/html")
    html = body.decode()
    named = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assets = [n for n in named if n.startswith("dashboard/")]
    assert {"dashboard/dashboard.js", "dashboard/dashboard.css", "dashboard/vendor/uplot/uPlot.iife.min.js",
            "dashboard/vendor/uplot/uPlot.min.css"} <= set(assets)
    assert not [n for n in named if "//" in n], "the page names another host"
    assert 'rel="icon" href="data:,"' in html  # no favicon request
    for name in assets:
        status, media, body = _get(pages.dashboard_asset(name.removeprefix("dashboard/")))
        assert status == 200 and len(body) > 1000, name
        assert media.startswith("text/javascript" if name.endswith(".js") else "text/css"), (name, media)
    script = _get(pages.dashboard_asset("dashboard.js"))[2].decode()
    assert "http://" not in script.replace("${location.protocol}//", "") and "https://" not in script
    assert "MIT" in _get(pages.dashboard_asset("vendor/uplot/LICENSE"))[2].decode()  # the licence ships with it


@pytest.mark.parametrize("name", ["../pages.py", "../../config.py", "/etc/passwd", "vendor", "nothing.js",
                                  "__pycache__/x.pyc"])
def test_only_the_dashboard_files_are_reachable(name: str) -> None:
    with pytest.raises(HTTPException) as refused:
        asyncio.run(pages.dashboard_asset(name))
    assert refused.value.status_code == 404


def test_docs_load_swagger_ui_from_the_package() -> None:
    page = asyncio.run(pages.swagger_ui(_request())).body.decode()
    urls = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page) + re.findall(r"url: '([^']+)'", page)
    assert "/docs/assets/swagger-ui-bundle.js" in urls and "/docs/assets/swagger-ui.css" in urls
    assert "/openapi.json" in urls and not [u for u in urls if "//" in u], urls
    assert '"validatorUrl": null' in page  # no badge from validator.swagger.io
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        status, _, body = _get(pages.docs_asset(name))
        assert status == 200 and len(body) > 1000
    bundle = _get(pages.docs_asset("swagger-ui-bundle.js"))[2]
    assert re.search(rb'"5\.\d+\.\d+"', bundle)  # Swagger UI 5: reads the OpenAPI 3.1 FastAPI writes
    # mounted under a prefix, the page points under it too
    prefixed = asyncio.run(pages.swagger_ui(_request("/api-root"))).body.decode()
    assert "/api-root/docs/assets/swagger-ui-bundle.js" in prefixed
