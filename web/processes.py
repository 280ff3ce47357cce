"""Blueprint 'processes' (being built)."""

from flask import Blueprint

bp = Blueprint("processes", __name__)
