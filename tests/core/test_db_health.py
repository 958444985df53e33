"""Connection health checks: skipped for a connection used a moment ago, kept otherwise."""

import time

import pytest
from django.db import connection

from core.db import RECENT_USE_SECONDS, connections_mark_used, connections_trust_recent

pytestmark = pytest.mark.django_db


@pytest.fixture
def used_connection():
    connection.ensure_connection()
    connections_mark_used()
    connection.health_check_done = False
    yield connection
    connection.errors_occurred = False


def test_a_connection_used_a_moment_ago_is_not_checked_again(used_connection):
    connections_trust_recent()
    assert used_connection.health_check_done


def test_an_idle_connection_is_checked(used_connection):
    used_connection.fulfil_last_used = time.monotonic() - RECENT_USE_SECONDS - 0.1
    connections_trust_recent()
    assert not used_connection.health_check_done


def test_a_connection_that_had_an_error_is_checked(used_connection):
    used_connection.errors_occurred = True
    connections_trust_recent()
    assert not used_connection.health_check_done
