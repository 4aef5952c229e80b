from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def psf2d() -> np.ndarray:
    return np.load(DATA / "paper_psf_2d.npy")


@pytest.fixture
def psf3d() -> np.ndarray:
    return np.load(DATA / "paper_psf_3d.npy")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
