"""`CAIRN_EMBEDDING__TORCH_THREADS` reaches torch when the server starts (benchmarks/embed_load.py
measures why an operator would set it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from core.settings import EmbeddingSettings


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_torch_threads_setting_is_applied_at_start(make_container: Callable[..., object], two_threads: None) -> None:
    make_container(embedding=EmbeddingSettings(torch_threads=1))
    assert torch.get_num_threads() == 1


def test_unset_leaves_torch_threads_alone(make_container: Callable[..., object], two_threads: None) -> None:
    make_container()
    assert torch.get_num_threads() == 2
