"""The options of `lpllm read` and `lpllm eval` that load a model and read plates with it: one definition, so the two
commands cannot drift apart."""

from dataclasses import dataclass, field
from typing import Literal

from modeling_lpllm.plate_reading import check_max_new_tokens
from modeling_lpllm.plate_scores import check_top_k


def check_counts(arguments, names: tuple[str, ...]) -> None:
    """Each named option is None (its default applies) or a whole number >= 1; a bool is no count."""
    for name in names:
        value = getattr(arguments, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


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
    top_k: int = field(
        default=1,
        metadata={"help": "Candidate readings per plate: above 1, beam search with that many beams, best first "
        "(an LP-LLM or Qwen3-VL model only)."},
    )
    num_beams: int | None = field(
        default=None,
        metadata={"help": "Readings searched per plate by beam search (at least top_k); the reading is the best "
        "one that fits `region`. None: the model's saved generation_config value (1, greedy, when it has none)."},
    )
    region: str | None = field(
        default="auto",
        metadata={"help": "How candidates are ranked: auto (those fitting some region's plate pattern first, if they "
        "have at least 1%% of the best one's probability), a region code such as BR (those fitting it first), or none "
        "(the model's order)."},
    )
    constrain: bool = field(
        default=False,
        metadata={"help": "Write only texts that fit `region`'s plate patterns (needs a region code; an LP-LLM or "
        "Qwen3-VL model only)."},
    )
    fusion: Literal["late", "joint"] | None = field(
        default=None,
        metadata={"help": "How the frames of a track (a multi-frame sample) are read together: late (each frame a "
        "prompt of its own, their next-token log-probabilities averaged) or joint (all frames in one prompt; an LP-LLM "
        "or Qwen3-VL model only). None: late."},
    )

    def __post_init__(self):
        check_counts(self, ("batch_size", "max_new_tokens"))
        if self.max_new_tokens is not None:
            check_max_new_tokens(self.max_new_tokens)
        self.top_k = check_top_k(self.top_k)
        if self.num_beams is not None:
            self.num_beams = check_top_k(self.num_beams, "num_beams")
        # The command line has no None: the word `none` stands for it.
        if isinstance(self.region, str) and self.region.strip().lower() == "none":
            self.region = None
        if self.region is not None and (not isinstance(self.region, str) or not self.region.strip()):
            raise ValueError(f"`region` must be auto, a region code such as BR, or none; got {self.region!r}.")
        if not isinstance(self.constrain, bool):
            raise ValueError(f"`constrain` must be true or false; got {self.constrain!r}.")
        # A region code is checked against the model's patterns when it loads (its processor may add regions).
        if self.constrain and (self.region is None or self.region.strip().lower() == "auto"):
            raise ValueError(
                "`constrain` writes only texts that fit one region's plate patterns: give `region` a region code, "
                "e.g. --region BR."
            )
