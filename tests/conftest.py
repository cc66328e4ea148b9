"""Test fixtures (environment settings live in the repository's root conftest.py)."""

import os

import pytest
import torch

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def fixtures_dir():
    return FIXTURES
