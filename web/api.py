"""Blueprint 'api' (being built)."""

from flask import Blueprint

bp = Blueprint("api", __name__)
