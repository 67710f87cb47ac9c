"""The output contract: the columns every builder writes, and how one sample becomes one row.

The conversation columns come from `modeling_lpllm.processing_lpllm.plate_messages`, the same function that
builds prompts at inference time, so training data and queries share one definition: `prompt` is the user turn
(image placeholders then the instruction) and `completion` the assistant turn (the plate text), TRL's
conversational prompt-completion form.
"""

import json
from dataclasses import dataclass, field

from datasets import Features, Image, List, Value

from modeling_lpllm.processing_lpllm import DEFAULT_PROMPT, plate_messages

#: Degradation label of real (not synthetic) data: degraded, but by the world, not by a known transform.
REAL_DEGRADATION = "real"

_CONTENT = List({"type": Value("string"), "text": Value("string")})
_TURNS = List({"role": Value("string"), "content": _CONTENT})

#: The columns of every split of every built dataset.
FEATURES = Features(
    {
        "id": Value("string"),
        "images": List(Image()),
        "prompt": _TURNS,
        "completion": _TURNS,
        "text": Value("string"),
        "region": Value("string"),
        "source": Value("string"),
        "subset": Value("string"),
        "num_frames": Value("int32"),
        "degradation": Value("string"),
        "severity": Value("int32"),
        "degradation_params": Value("string"),
    }
)


@dataclass
class Sample:
    """One plate reading to learn or evaluate: one or more images of the same plate and its label.

    Args:
        id: Unique within the dataset (a relative input path, or `synthetic-000042`).
        images: PNG bytes of each frame (one for a single crop).
        text: The normalised plate text.
        region: Region code (`CN`, `BR`, ... or `XX` when unknown).
        source: The builder (`ccpd`, `rodosol`, `mdlp`, `crops`, `synthetic`).
        subset: Finer grouping within the source (CCPD folder, RodoSol vehicle/layout, synthetic layout, ...).
        degradation: Degradation type applied (synthetic), `none`, or `real` for real data.
        severity: Severity level of `degradation` (1 = mild ... 5 = severe), 0 for `none`, -1 when unknown.
        degradation_params: JSON with the parameters of the degradation, per frame.
        original_modes: PIL modes the input images had before conversion to RGB (for the summary only).
    """

    id: str
    images: list[bytes]
    text: str
    region: str
    source: str
    subset: str = ""
    degradation: str = REAL_DEGRADATION
    severity: int = -1
    degradation_params: dict | list = field(default_factory=dict)
    original_modes: tuple[str, ...] = ()

    def to_row(self, prompt: str = DEFAULT_PROMPT) -> dict:
        """The dataset row of this sample (images as encoded bytes, as `datasets.Image` stores them)."""
        messages = plate_messages(prompt, num_images=len(self.images), answer=self.text)
        return {
            "id": self.id,
            "images": [{"bytes": data, "path": None} for data in self.images],
            "prompt": messages[:1],
            "completion": messages[1:],
            "text": self.text,
            "region": self.region,
            "source": self.source,
            "subset": self.subset,
            "num_frames": len(self.images),
            "degradation": self.degradation,
            "severity": self.severity,
            "degradation_params": json.dumps(self.degradation_params, sort_keys=True, ensure_ascii=False),
        }


def conversation(row: dict) -> list[dict]:
    """The full conversation of a dataset row (prompt then completion), with the `None` fields that Arrow adds to
    image parts (`{"type": "image", "text": None}`) removed, ready for `processor.apply_chat_template`."""
    return [
        {
            "role": turn["role"],
            "content": [{k: v for k, v in part.items() if v is not None} for part in turn["content"]],
        }
        for turn in list(row["prompt"]) + list(row["completion"])
    ]


__all__ = ["FEATURES", "REAL_DEGRADATION", "Sample", "conversation"]
