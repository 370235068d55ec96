"""The password hash's cost comes from [signin]; a cost too low for real passwords is said."""

from __future__ import annotations

import logging

import pytest
from argon2 import PasswordHasher

from mailflow.trust import passwords


@pytest.fixture(autouse=True)
def _restore_cost():
    before = passwords._hasher
    yield
    passwords._hasher = before


def test_a_weak_cost_is_warned_about_and_still_used(caplog):
    caplog.set_level(logging.WARNING, logger="mailflow.trust.passwords")
    passwords._hasher = PasswordHasher()  # as a process starts (other tests leave theirs)
    passwords.set_cost(1, 8, 1)
    assert "weak for real passwords" in caplog.text
    hashed = passwords.hash_password("correct horse battery")
    assert "$m=8,t=1,p=1$" in hashed


def test_the_shipped_cost_is_not_warned_about(caplog):
    caplog.set_level(logging.WARNING, logger="mailflow.trust.passwords")
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    passwords.set_cost(3, 65536, 4)
    assert caplog.text == ""
