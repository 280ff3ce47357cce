"""Blueprint 'engine_rest' (being built)."""

from flask import Blueprint

bp = Blueprint("engine_rest", __name__)
