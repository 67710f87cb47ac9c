"""Every test runs offline: nothing may reach the Hugging Face Hub. And the fixtures several test files share."""

import os
import sys

import pytest


os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random LP-LLM checkpoint folder with its processor and remote code, one per test module."""
    from tiny_lpllm import save_tiny_checkpoint

    directory = tmp_path_factory.mktemp("tiny_lpllm")
    save_tiny_checkpoint(directory)
    return directory
