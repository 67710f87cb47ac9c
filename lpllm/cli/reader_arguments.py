"""The options of `lpllm read` and `lpllm eval` that load a model and read plates with it: one definition, so the two
commands cannot drift apart."""

from dataclasses import dataclass, field
from typing import Literal


@dataclass(kw_only=True)
class ReaderArguments:
    batch_size: int = field(default=8, metadata={"help": "Plates read together."})
    device: str | None = field(
        default=None,
        metadata={"help": "torch device (None: the launcher's device for each process, else cuda if available, "
        "else cpu)."},
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto", metadata={"help": "Weights' dtype of a Qwen3-VL-family model (auto: float32 on a CPU)."}
    )
    max_new_tokens: int | None = field(
        default=None,
        metadata={"help": "Generation length cap of a Qwen3-VL-family model (None: the model's saved "
        "generation_config value)."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run the Python code a model ships with (its config's auto_map), e.g. a Hub LP-LLM. An "
        "LP-LLM folder this project wrote loads without it."},
    )
