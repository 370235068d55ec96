"""The web fixtures (accounts of every role, signed-in clients) for the API fuzz test."""

from tests.support.web import people, web  # noqa: F401
