"""RapidOCR off the shelf as the `rapidocr` reader: it reads a clear crop, eval.py names it by the word, and a missing
extra is reported before any work."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from dataset_scripts.synthetic.fonts import find_fonts
from lpllm.baselines import rapidocr as rapidocr_reader


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lpllm.cli import evaluate as eval_cli  # noqa: E402


HAS_RAPIDOCR = all(importlib.util.find_spec(name) is not None for name in ("rapidocr", "onnxruntime"))
needs_rapidocr = pytest.mark.skipif(
    not HAS_RAPIDOCR, reason=f"rapidocr / onnxruntime not installed ({rapidocr_reader.INSTALL_HINT})"
)
FAST = ["--latency_runs", "1", "--latency_warmup", "0", "--batch_size", "2", "--log_level", "WARNING"]


def clear_plate(text: str) -> Image.Image:
    """Dark text on a light plate with a border, large and sharp: any OCR should read it."""
    font = ImageFont.truetype(find_fonts(need_cjk=False).latin, 44)
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGB", (right - left + 40, bottom - top + 30), (235, 235, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((2, 2, image.width - 3, image.height - 3), outline=(20, 20, 20), width=2)
    draw.text((20 - left, 15 - top), text, font=font, fill=(15, 15, 20))
    return image


def crop_folder(directory: Path, texts: list[str]) -> Path:
    (directory / "images").mkdir(parents=True)
    with open(directory / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "text", "region"])
        for text in texts:
            clear_plate(text).save(directory / "images" / f"{text}.png")
            writer.writerow([f"images/{text}.png", text, "BR"])
    return directory


@needs_rapidocr
def test_reads_a_clear_crop_with_the_recognizer_in_the_wheel_and_downloads_nothing(monkeypatch):
    from rapidocr.utils.download_file import DownloadFile

    def no_download(*args, **kwargs):
        raise AssertionError("the rapidocr reader tried to download a file")

    monkeypatch.setattr(DownloadFile, "run", no_download)
    reader = rapidocr_reader.RapidOCRRecognizer.from_pretrained()
    assert reader.read([[clear_plate("ABC1234")], [clear_plate("RIO2A18")]]) == ["ABC1234", "RIO2A18"]
    assert reader.onnx_file.is_relative_to(Path(importlib.util.find_spec("rapidocr").origin).parent)
    assert reader.describe()["model_type"] == "rapidocr"


@needs_rapidocr
def test_eval_compare_names_rapidocr_by_the_word(tmp_path, monkeypatch):
    data = crop_folder(tmp_path / "crops", ["ABC1234", "XYZ9876"])
    (tmp_path / "rapidocr").mkdir()  # a folder of that name is not what the word means
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "report"
    eval_cli.main(["--compare", "rapidocr", "--dataset_name", str(data), "--output_dir", str(output), *FAST])
    results = json.loads((output / "rapidocr" / "results.json").read_text(encoding="utf-8"))
    assert results["model"]["name"] == "rapidocr"
    assert results["accuracy"] == 1.0 and results["dataset"]["num_evaluated"] == 2
    assert results["model"]["description"]["rapidocr_version"]
    assert "| rapidocr |" in (output / "comparison.md").read_text(encoding="utf-8")


@needs_rapidocr
def test_several_views_are_refused_before_any_work(tmp_path):
    data = crop_folder(tmp_path / "crops", ["ABC1234"])
    with pytest.raises(ValueError, match="one view"):
        eval_cli.main(["--model_name_or_path", "rapidocr", "--dataset_name", str(data), "--num_views", "3",
                       "--output_dir", str(tmp_path / "report")])  # fmt: skip
    assert not (tmp_path / "report").exists()


def test_a_missing_extra_says_how_to_install_it_before_any_work(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "rapidocr" else find_spec(name, *args)
    )
    data = crop_folder(tmp_path / "crops", ["ABC1234"])
    with pytest.raises(ImportError, match=r"pip install 'lpllm\[baselines\]'"):
        eval_cli.main(["--compare", "rapidocr", "--dataset_name", str(data), "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
