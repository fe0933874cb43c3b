"""GET /docs: the API reference for integrators, Swagger UI over /openapi.json, served whole by
the collector (browsers that reach only the collector need no other host). The page and its
files are not API operations, so the document does not list them.

Swagger UI's own build comes from the PyPI package flask-swagger-ui (the ``dist`` directory of
Swagger UI 5, rebuilt there on each Swagger UI release); only its files are used, not its
blueprint. swagger-ui-bundle (connexion's) was passed over: its latest release ships Swagger UI
4.15, which cannot show an OpenAPI 3.1 document such as ours.
"""
from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Flask, Response, abort, render_template_string, send_from_directory

from .config import get_settings

bp = Blueprint("docs", __name__)
DIST = str(files("flask_swagger_ui") / "dist")
#: The files the page loads, with their types; no other file of the package is served
#: (its oauth2-redirect.html, say, is a page of script that nothing here needs).
ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript", "favicon-32x32.png": "image/png"}
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Collector API reference</title>
  <link rel="stylesheet" href="{{ url_for('docs.asset', name='swagger-ui.css') }}">
  <link rel="icon" type="image/png" href="{{ url_for('docs.asset', name='favicon-32x32.png') }}">
  <style>body { margin: 0; background: #fafafa; }</style>
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{{ url_for('docs.asset', name='swagger-ui-bundle.js') }}"></script>
  <script>
    // validatorUrl null: never ask Swagger's online validator about the document.
    window.ui = SwaggerUIBundle({url: {{ url_for('openapi.openapi')|tojson }}, dom_id: "#swagger-ui",
                                 validatorUrl: null, deepLinking: true});
  </script>
</body>
</html>
"""


def init_app(app: Flask) -> None:
    """Serve /docs and its assets on ``app``, unless ``COLLECTOR_DOCS`` is false (then they are 404s)."""
    if get_settings(app).docs:
        app.register_blueprint(bp)


@bp.get("/docs")
def page() -> str:
    """The interactive API reference (Swagger UI): read it, and send a real event with Try it out."""
    return render_template_string(PAGE)


@bp.get("/docs/<name>")
def asset(name: str) -> Response:
    """One of the files the reference page loads."""
    if name not in ASSETS:
        abort(404, f"no such file of the API reference: {name}")
    return send_from_directory(DIST, name, mimetype=ASSETS[name])
