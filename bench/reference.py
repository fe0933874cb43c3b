"""The ceiling of this stack: a Flask app whose one route reads the body and answers 204.

Served exactly as the collector is: ``gunicorn -c gunicorn.conf.py bench.reference:app``.
"""
from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.post("/collect/<aid>/<tid>/event")
def track(aid: str, tid: str) -> tuple[str, int]:
    """Read the body, keep nothing, answer 204."""
    request.get_data()
    return "", 204
