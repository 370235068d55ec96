"""The web fixtures (accounts of every role, signed-in clients) for the API fuzz test."""

from tests.web.conftest import people, web  # noqa: F401
