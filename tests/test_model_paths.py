"""A model name that is neither a local path nor in the hub cache fails in one line, at once."""

import socket
import time

import pytest
from huggingface_hub import constants

from gpt4llm.errors import UserError
from gpt4llm.models import resolve_model_path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "hub"


def test_an_unreachable_hub_is_one_line_without_retries(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    with pytest.raises(UserError, match=r"org/model: not a local path.*127\.0\.0\.1 cannot be"):
        resolve_model_path("org/model")
    assert time.monotonic() - start < 5  # huggingface_hub's own retries take ~50 s


def test_offline_mode_names_the_setting(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set"):
        resolve_model_path("org/model")


def test_a_cached_hub_model_needs_no_network(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = empty_hub_cache / "models--org--model"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert resolve_model_path("org/model") == "org/model"


def test_a_missing_local_path_is_not_taken_for_a_hub_id(tmp_path):
    with pytest.raises(UserError, match="model path not found"):
        resolve_model_path(str(tmp_path / "nope"))


def test_two_processes_converting_the_embedded_model_at_once_convert_it_once(tmp_path, monkeypatch):
    """Two runs started together on a fresh machine: the second waits for the first's
    conversion and uses it, instead of converting again and renaming over a checkpoint the
    first may be loading."""
    import threading
    import time

    from gpt4llm import models

    monkeypatch.setenv("GPT4LLM_CACHE_DIR", str(tmp_path))
    conversions = []

    def slow_convert(out):
        conversions.append(out)
        time.sleep(0.3)  # long enough for the other thread to reach the lock
        staged = out.parent / "staged"
        staged.mkdir()
        for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
            (staged / name).write_text("{}")
        staged.rename(out)

    monkeypatch.setattr(models, "_convert_embedded", slow_convert)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(models.ensure_embedded())) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [models.embedded_dir()] * 2
    assert len(conversions) == 1
