"""The security regression tests reuse the REST fixtures (app, client, demo staff, credentials)."""

from tests.rest.conftest import any_client, app, client  # noqa: F401
