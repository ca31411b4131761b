"""``/docs`` without a network: the Swagger UI page with its scripts served from the ``swagger-ui-bundle`` package
(FastAPI's default page loads them from a CDN, blank on an offline network). Without the package, ``/docs`` is a
404 that points to ``/openapi.json``. ReDoc (CDN only) is off."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the Swagger UI assets are served.
ASSETS = "/docs-assets"


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` from local assets (create the app with ``docs_url=None, redoc_url=None``)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        swagger_ui_path = None
    if swagger_ui_path is None:

        @app.get("/docs", include_in_schema=False)
        async def no_docs() -> HTMLResponse:
            raise HTTPException(404, "interactive docs need the swagger-ui-bundle package (pip install 'recsys[serve]'); the API schema is at /openapi.json")

        return
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
