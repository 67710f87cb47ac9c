"""Reference plate readers trained and evaluated on the same data as LP-LLM, so every comparison is side by side:
CRNN+CTC and LPRNet (small, fast on CPU), and an export of the data for fast-plate-ocr's own CLI; and, untrained,
RapidOCR off the shelf (`rapidocr`: the generic OCR a user could pick instead).

Train with `python -m lpllm.baselines.train --arch crnn --dataset_name DIR --output_dir OUT --max_minutes M`; evaluate the
output with `python eval.py --model_name_or_path OUT ...` or `--compare`.
"""

from .checkpoint import ARCHITECTURES, BaselineConfig, build_model, load_baseline, save_baseline
from .ctc import CTCCodec


__all__ = ["ARCHITECTURES", "BaselineConfig", "CTCCodec", "build_model", "load_baseline", "save_baseline"]
