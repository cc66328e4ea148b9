"""Test fixtures (environment settings live in the repository's root conftest.py)."""

import os

import pytest
import torch

from hub_server import hub, hub_server  # noqa: F401  (fixtures: a local Hub server for the tests that push and pull)
from user_world import user_world  # noqa: F401  (fixture: a new user's folder for the story and doc tests)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """One torch thread for this test: tiny tensors gain nothing from threads contending for shared cores. A test
    file opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fixtures_dir():
    return FIXTURES
