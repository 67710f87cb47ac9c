"""Which reader a model path needs: a baseline checkpoint, a fast-plate-ocr export, RapidOCR off the shelf (the word
`rapidocr`), or a Qwen3-VL-family model.

This sits above evaluation and the baselines (it knows both), so neither has to import the other.
"""

from pathlib import Path

import torch

from ..baselines.fast_plate_ocr import PLATE_CONFIG_FILE as FAST_PLATE_OCR_CONFIG_FILE
from ..baselines.fast_plate_ocr import FastPlateOCRRecognizer
from ..baselines.checkpoint import CONFIG_FILE as BASELINE_CONFIG_FILE
from ..baselines.rapidocr import RAPIDOCR_READER, RapidOCRRecognizer
from ..baselines.recognizer import BaselineRecognizer
from ..evaluation.model_sources import check_model_reference
from ..evaluation.recognizers import load_vision_language_recognizer, pick_device


def load_recognizer(
    path: str,
    device: torch.device | str | None = None,
    num_views: int | None = None,
    top_k: int = 1,
    region: str | None = "auto",
    constrain: bool = False,
    fusion: str | None = None,
    num_beams: int | None = None,
    **vlm_kwargs,
):
    """The reader for `path`: a `lpllm.baselines.train` checkpoint, an exported fast-plate-ocr model, RapidOCR off the
    shelf (`path` is the word `rapidocr`; a folder of that name is `./rapidocr`), or a Qwen3-VL-family checkpoint dir /
    Hub id (LP-LLM or stock). `num_views`: views of each crop a plate is read from (None: the checkpoint's processor's
    for a Qwen3-VL model, else 1; a fast-plate-ocr export and RapidOCR read one view only).

    `top_k`, `num_beams`, `region`, `constrain` (candidates, the readings searched, their ranking by plate pattern,
    pattern-constrained writing) and `fusion` (how a track's frames are read together; None: the model's) go to a
    Qwen3-VL model's reader; the other readers read one text per plate, so `region` means nothing to them and `top_k`
    or `num_beams` > 1, `constrain` or a `fusion` is refused. `vlm_kwargs` go to `load_vision_language_recognizer`
    (`trust_remote_code` among them).

    Raises:
        FileNotFoundError: for a local path that does not exist (not reported as a bad Hub repo id).
        ValueError: with what was expected, when the directory holds none of these; for `top_k` > 1, `constrain` or
            a `fusion` with a reader other than a Qwen3-VL model, before it loads.
        ImportError: for `rapidocr` without the `baselines` extra installed.
    """
    check_reader_options(path, top_k, constrain, fusion, num_beams)
    if path == RAPIDOCR_READER:
        return RapidOCRRecognizer.from_pretrained(num_views=num_views)
    check_model_reference(path, "model_name_or_path")
    device = device if isinstance(device, torch.device) else pick_device(device)
    directory = Path(path)
    if directory.is_dir() and (directory / BASELINE_CONFIG_FILE).is_file():
        return BaselineRecognizer.from_pretrained(directory, device=device, num_views=num_views or 1)
    if directory.is_dir() and (directory / FAST_PLATE_OCR_CONFIG_FILE).is_file():
        if (num_views or 1) > 1:
            raise ValueError(f"{path} is a fast-plate-ocr export, which reads one view of a plate: use num_views=1.")
        return FastPlateOCRRecognizer.from_pretrained(directory)
    if (
        directory.exists()
        and not (directory / "config.json").is_file()
        and not (directory / "adapter_config.json").is_file()
    ):
        raise ValueError(
            f"{path} is not a model directory: expected a transformers checkpoint (config.json), a"
            f" `python -m lpllm.baselines.train` output ({BASELINE_CONFIG_FILE}) or a fast-plate-ocr export"
            f" ({FAST_PLATE_OCR_CONFIG_FILE} + .onnx)."
        )
    return load_vision_language_recognizer(
        path, device, num_views=num_views, top_k=top_k, region=region, constrain=constrain, fusion=fusion,
        num_beams=num_beams, **vlm_kwargs,
    )


def one_text_reader(path: str) -> str | None:
    """What `path` names when it is a reader of one text per plate, without loading it: RapidOCR, a CTC baseline or a
    fast-plate-ocr export; None for anything else (a Qwen3-VL-family model)."""
    if path == RAPIDOCR_READER:
        return "RapidOCR"
    directory = Path(path)
    if directory.is_dir() and (directory / BASELINE_CONFIG_FILE).is_file():
        return "a CTC baseline"
    if directory.is_dir() and (directory / FAST_PLATE_OCR_CONFIG_FILE).is_file():
        return "a fast-plate-ocr export"
    return None


def check_reader_options(
    path: str, top_k: int = 1, constrain: bool = False, fusion: str | None = None, num_beams: int | None = None
) -> None:
    """Refuses `top_k` or `num_beams` > 1, `constrain` and a `fusion` for a reader of one text per plate
    (`one_text_reader`), before it loads.

    Raises:
        ValueError: naming `path`, what it is and what the options need.
    """
    reader = one_text_reader(path)
    if reader is not None and (top_k > 1 or (num_beams or 1) > 1 or constrain or fusion is not None):
        raise ValueError(
            f"{path} is {reader}, which reads one plate text; top_k/num_beams/constrain/fusion need an LP-LLM or "
            f"Qwen3-VL model (got top_k={top_k}, num_beams={num_beams}, constrain={constrain}, fusion={fusion})."
        )
