"""Shared test setup: offline, CPU, few threads, deterministic; the fixtures several test modules use."""

import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def one_thread():
    """One intra-op thread (modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``): on a
    busy 2-core machine every parallel region of a tiny 2-thread forward waits for the other core, making
    such forwards up to 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def script():
    """``scripts/evaluate.py`` as a module, with Accelerate's process state reset around the test (the script
    makes its own Accelerator: no state shared with other tests)."""
    from accelerate.state import AcceleratorState, GradientState
    from interop_helpers import load_script

    AcceleratorState._reset_state(True)
    yield load_script("evaluate")
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def check_data():
    """``scripts/check_data.py`` loaded as a module (its ``main(argv)`` returns the exit status)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "check_data.py"
    spec = importlib.util.spec_from_file_location("check_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    """A small embedded synthetic benchmark (8 train, 3 val images of 160x88 per domain) for training runs."""
    from srha_hf.data.synthetic import make_synthetic_benchmark

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_benchmark(root, num_train=8, num_val=3, size=(160, 88))
    return root
