import pytest


@pytest.fixture(autouse=True)
def _made_up_event_data(any_event_data):
    """The backbone's tests publish made-up data; the apps' contracts are tests/contract's
    (the fixture comes from tests/conftest.py)."""
