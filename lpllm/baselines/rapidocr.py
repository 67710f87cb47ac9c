"""RapidOCR off the shelf as a baseline reader: the generic OCR a user would install instead of a plate reader
(optional: `pip install 'lpllm[baselines]'`, i.e. rapidocr and onnxruntime). Nothing is trained.

The word `rapidocr` names it wherever eval.py takes a model (a folder of that name is `./rapidocr`):

    python eval.py --compare rapidocr runs/lpllm/final --dataset_name ../shared/realdata/openalpr_br \
        --output_dir reports/openalpr_br
    python eval.py --model_name_or_path rapidocr --dataset_name ../shared/realdata/openalpr_br --output_dir reports/br

Each crop is read as one text line by the PP-OCR text recognizer that ships inside the rapidocr wheel, without its
text detector or orientation classifier (`engine(crop, use_det=False, use_cls=False)`), on the CPU with
onnxruntime. The recognizer is loaded from the wheel by path, so nothing is downloaded. A two-row plate is read as
whatever single line the recognizer makes of it. Its answer is normalised like every reader's (eval.py's label
normalisation); a multi-frame sample is read from its first frame.
"""

import importlib.metadata
import importlib.util
from pathlib import Path

import torch

from .onnx_models import onnx_parameter_counts


RAPIDOCR_READER = "rapidocr"
INSTALL_HINT = "pip install 'lpllm[baselines]'"
# The recognizer's vocabulary is stored in the ONNX file's metadata under this key; without it rapidocr would
# download a character dictionary.
CHARACTER_METADATA_KEY = "character"


def check_rapidocr_settings(num_views: int | None = None) -> None:
    """Checks that the `rapidocr` reader can run with these settings, before any work is done.

    Raises:
        ImportError: when rapidocr or onnxruntime is not installed, saying how to install them.
        ValueError: for `num_views` > 1 (RapidOCR reads the crop itself, one view).
    """
    missing = [name for name in ("rapidocr", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"The `{RAPIDOCR_READER}` reader needs {' and '.join(missing)} (not installed): {INSTALL_HINT}."
        )
    if (num_views or 1) > 1:
        raise ValueError(f"`{RAPIDOCR_READER}` reads one view of a plate (the crop): use num_views=1, got {num_views}.")


def bundled_recognizer() -> Path:
    """The PP-OCR text recognizer (ONNX) shipped inside the installed rapidocr wheel.

    Raises:
        FileNotFoundError: when the wheel holds no recognizer, or more than one (rapidocr would then download or
            pick one itself; this reader runs offline only).
    """
    package = Path(importlib.util.find_spec("rapidocr").origin).parent
    found = sorted((package / "models").glob("*rec*.onnx"))
    if len(found) != 1:
        raise FileNotFoundError(
            f"Expected exactly one text recognizer (*rec*.onnx) bundled in {package / 'models'}, found "
            f"{[path.name for path in found]}: this rapidocr install ({importlib.metadata.version('rapidocr')}) "
            "does not ship its recognizer in the wheel, and the `rapidocr` reader does not download models."
        )
    return found[0]


class RapidOCRRecognizer:
    """Reads plates with RapidOCR's PP-OCR text recognizer, one crop at a time through the engine's public call, as
    a user would (its recognizer batches only behind internal steps: on openalpr_us, batches of 8 read the same
    and took 0.7x the time)."""

    name = RAPIDOCR_READER
    paradigm = "generic OCR (PP-OCR text recognizer), off the shelf"

    def __init__(self, engine, onnx_file: Path):
        self.engine = engine
        self.onnx_file = onnx_file
        self.path = str(onnx_file)
        self.device = torch.device("cpu")

    @classmethod
    def from_pretrained(cls, num_views: int | None = None) -> "RapidOCRRecognizer":
        """The engine with the wheel's recognizer only (no detector, no classifier), loaded offline.

        Raises:
            ImportError, ValueError: as `check_rapidocr_settings`.
            FileNotFoundError: as `bundled_recognizer`.
            ValueError: when the recognizer does not carry its characters (rapidocr would download them).
        """
        check_rapidocr_settings(num_views)
        import onnxruntime
        from rapidocr import RapidOCR

        onnx_file = bundled_recognizer()
        metadata = onnxruntime.InferenceSession(str(onnx_file)).get_modelmeta().custom_metadata_map
        if CHARACTER_METADATA_KEY not in metadata:
            raise ValueError(
                f"{onnx_file} carries no `{CHARACTER_METADATA_KEY}` list in its metadata, so rapidocr would download"
                " a character dictionary; the `rapidocr` reader runs offline only."
            )
        engine = RapidOCR(
            params={"Global.use_det": False, "Global.use_cls": False, "Rec.model_path": str(onnx_file)}
        )
        return cls(engine, onnx_file)

    def parameter_counts(self) -> dict | None:
        return onnx_parameter_counts(self.onnx_file)

    def read(self, batch: list[list], prompts=None) -> list[str]:
        readings = []
        for images in batch:
            output = self.engine(images[0].convert("RGB"))  # built with use_det=False, use_cls=False
            readings.append("".join(getattr(output, "txts", None) or ()))
        return readings

    def describe(self) -> dict:
        return {
            "model_type": RAPIDOCR_READER,
            "rapidocr_version": importlib.metadata.version("rapidocr"),
            "onnxruntime_version": importlib.metadata.version("onnxruntime"),
            "recognizer": self.onnx_file.name,
            "num_views": 1,
        }


__all__ = [
    "INSTALL_HINT",
    "RAPIDOCR_READER",
    "RapidOCRRecognizer",
    "bundled_recognizer",
    "check_rapidocr_settings",
]
