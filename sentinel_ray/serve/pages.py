"""The analyst's dashboard page (`/`) and the API documentation (`/docs`), served from
installed packages so that both work on a machine with no internet.

The page, its script and style and the charting library it draws with (uPlot, vendored
under `dashboard/vendor/` with its licence) are package data of sentinel_ray. Swagger UI
comes from the `fastapi-offline` package, which ships its bundle as package data; FastAPI's
own `/docs` would load it from a CDN and show a blank page offline. The app that includes
`router` turns FastAPI's CDN pages off (`docs_url=None, redoc_url=None`); there is no
`/redoc`: ReDoc's bundle always fetches its logo from its CDN.
"""
# No `from __future__ import annotations`: FastAPI reads these annotations inside Serve replicas.
import functools
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

DOCS_TITLE = "Sentinel Ray API"
OPENAPI_URL = "/openapi.json"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE
}
# The page and its assets change with the package: revalidate rather than keep stale copies.
_NO_CACHE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


def _walk(root: Traversable, prefix: str = "") -> dict[str, Traversable]:
    files: dict[str, Traversable] = {}
    for entry in root.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            if entry.name != "__pycache__":
                files.update(_walk(entry, f"{name}/"))
        elif not entry.name.endswith((".py", ".pyc")):
            files[name] = entry
    return files


@functools.cache
def dashboard_files() -> dict[str, Traversable]:
    """Every file of the dashboard by its path under dashboard/: the only files served from it."""
    return _walk(resources.files("sentinel_ray.serve") / "dashboard")


@functools.cache
def docs_files() -> dict[str, Traversable]:
    """Swagger UI's bundle (and favicon) as fastapi-offline ships them."""
    return _walk(resources.files("fastapi_offline") / "static")


def _media_type(name: str) -> str:
    dot = name.rfind(".")
    suffix = name[dot:] if dot > name.rfind("/") else ""
    return _MEDIA_TYPES.get(suffix, "application/octet-stream")


@functools.cache
def _read(kind: str, name: str) -> bytes:
    files = dashboard_files() if kind == "dashboard" else docs_files()
    return files[name].read_bytes()


def _file(kind: str, name: str) -> Response:
    files = dashboard_files() if kind == "dashboard" else docs_files()
    if name not in files:  # a fixed list: no path is ever joined from the request
        raise HTTPException(404, detail=f"no file {name[:80]!r} here")
    return Response(_read(kind, name), media_type=_media_type(name), headers=_NO_CACHE)


@router.get("/")
async def dashboard() -> Response:
    """The analyst's dashboard: alert queue, ticker timeline, trending, data quality."""
    return _file("dashboard", "index.html")


@router.get("/dashboard/{name:path}")
async def dashboard_asset(name: str = Path(..., max_length=200)) -> Response:
    return _file("dashboard", name)


@router.get("/docs/assets/{name}")
async def docs_asset(name: str = Path(..., max_length=100)) -> Response:
    return _file("docs", name)


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{OPENAPI_URL}", title=f"{DOCS_TITLE} - Swagger UI",
        swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js", swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
        swagger_favicon_url=f"{root}/docs/assets/favicon.png", oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
        # no badge image from validator.swagger.io: nothing leaves the machine
        swagger_ui_parameters={"validatorUrl": None})


@router.get(OAUTH2_REDIRECT_URL)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()

