"""CMRM slot attention maps (model, figure, `lpllm eval --attention_maps`) and the `lpllm demo` page, served on
127.0.0.1 and called with gradio_client and, where Chromium is installed, from a headless browser."""

import contextlib
import io
import os
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from lpllm.cli import main as lpllm
from lpllm.evaluation.attention_maps import (
    ATTENTION_MAPS_FILE,
    PANEL_HEIGHT_RANGE,
    PANEL_WIDTH,
    TITLE_HEIGHT,
    SlotAttention,
    attention_figure,
    check_slot_attention,
    figure_png,
    slot_attention,
    visual_token_grid,
)
from modeling_lpllm.plate_reading import plate_reading_inputs
from tiny_lpllm import random_plate_image, save_tiny_checkpoint, tiny_model, tiny_processor


REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "demo_screenshot.png"
# The browser test saves its screenshot to SCREENSHOT (for the README) only when this is 1; the model and crop it shows
# can be a trained model's and a real crop (both default to the tiny checkpoint and a noise crop).
SAVE_SCREENSHOT = "LPLLM_SAVE_SCREENSHOT"
SCREENSHOT_MODEL = "LPLLM_SCREENSHOT_MODEL"
SCREENSHOT_CROP = "LPLLM_SCREENSHOT_CROP"
CROP_SIZES = [(94, 24), (60, 40), (124, 33)]
DPI = 110  # what eval.py saves the sheet at


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_lpllm")
    save_tiny_checkpoint(directory, seed=0)
    return str(directory)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Three crops with a labels file (an evaluation folder)."""
    folder = tmp_path_factory.mktemp("crops")
    for seed, size in enumerate(CROP_SIZES):
        random_plate_image(seed + 3, size=size).save(folder / f"{seed}.png")
    (folder / "labels.csv").write_text("file,text\n0.png,AB123\n1.png,CD456\n2.png,EF789\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def reader(checkpoint):
    return pipeline("image-to-text", model=checkpoint, trust_remote_code=True)


def test_slot_attention_has_a_row_per_slot_summing_to_one_and_changes_no_output():
    processor = tiny_processor()
    model = tiny_model(processor, seed=1)
    images = [random_plate_image(seed, size=size) for seed, size in enumerate(CROP_SIZES)]
    inputs = plate_reading_inputs(processor, [[image] for image in images])
    with torch.no_grad():
        logits = model(**inputs).logits
        maps = model.get_slot_attention(inputs["pixel_values"], inputs["image_grid_thw"])
        assert torch.equal(model(**inputs).logits, logits)
    tokens = (inputs["image_grid_thw"].prod(-1) // 4).tolist()  # merge 2 x 2
    assert [tuple(weights.shape) for weights in maps] == [(8, count) for count in tokens]
    for weights in maps:
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(8))
    # The drawing helper lays the same weights onto each image's token grid.
    items = slot_attention(model, processor, images)
    for item, weights, (_, height, width) in zip(items, maps, inputs["image_grid_thw"].tolist()):
        assert item.maps.shape == (8, height // 2, width // 2)
        np.testing.assert_allclose(item.maps.reshape(8, -1), weights.numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(item.mean.sum(), 1.0, rtol=1e-5)


def test_visual_tokens_lie_in_rows_of_merged_patches_or_in_one_row_for_ppocr():
    def config(encoder):
        return SimpleNamespace(vision_encoder=encoder, vision_config=SimpleNamespace(spatial_merge_size=2))

    assert visual_token_grid(config("qwen3_vl"), (1, 4, 12)) == (2, 6)
    assert visual_token_grid(config("ppocr"), (1, 4, 12)) == (1, 12)
    assert visual_token_grid(config("ppocr"), (1, 2, 48)) == (1, 24)


def test_models_without_slots_are_refused_with_the_reason():
    processor = tiny_processor()
    with pytest.raises(ValueError, match="cmrm_enabled=False"):
        check_slot_attention(tiny_model(processor, cmrm_enabled=False))
    with pytest.raises(ValueError, match="this is a qwen3_vl model"):
        check_slot_attention(SimpleNamespace(config=SimpleNamespace(model_type="qwen3_vl")))
    saved_before_maps = SimpleNamespace(config=SimpleNamespace(model_type="lpllm", cmrm_enabled=True))
    with pytest.raises(ValueError, match="predates slot attention maps"):
        check_slot_attention(saved_before_maps)


def assert_sheet_size(size, crop_sizes, num_slots=8, columns=None):
    """`size` is the pixel size of `attention_figure` for crops of these sizes at `DPI` (up to rounding)."""
    panels = num_slots + 2
    columns = columns or panels
    rows = -(-panels // columns)
    heights = [
        float(np.clip(PANEL_WIDTH * height / width, *PANEL_HEIGHT_RANGE)) + TITLE_HEIGHT for width, height in crop_sizes
    ]
    expected = (columns * PANEL_WIDTH * DPI, rows * sum(heights) * DPI)
    assert all(abs(side - expected_side) <= 1 for side, expected_side in zip(size, expected)), (size, expected)


def test_the_figure_has_the_crop_the_mean_and_every_slot_of_each_plate():
    maps = np.random.default_rng(0).random((8, 1, 6))
    items = [SlotAttention(random_plate_image(seed, size=size), maps / maps.sum(axis=(1, 2), keepdims=True))
             for seed, size in enumerate(CROP_SIZES[:2])]  # fmt: skip
    figure = attention_figure(items, ["first", "second"], columns=3)
    drawn = [axes for axes in figure.axes if axes.axison]
    assert len(drawn) == 2 * 10  # crop, mean, 8 slots; the two spare cells of each 4 x 3 block stay empty
    assert [axes.get_title() for axes in drawn[:3]] == ["first", "mean of 8 slots", "slot 1"]
    png = Image.open(io.BytesIO(figure_png(figure, dpi=DPI)))
    assert png.format == "PNG"
    assert_sheet_size(png.size, CROP_SIZES[:2], columns=3)


def test_eval_writes_the_attention_sheet_of_n_plates(checkpoint, crops, tmp_path):
    output_dir = tmp_path / "report"
    lpllm([
        "eval", "--model_name_or_path", checkpoint, "--dataset_name", str(crops), "--output_dir", str(output_dir),
        "--attention_maps", "2", "--latency_runs", "0", "--log_level", "WARNING",
    ])  # fmt: skip
    sheet = Image.open(output_dir / ATTENTION_MAPS_FILE)
    assert sheet.format == "PNG"
    assert_sheet_size(sheet.size, CROP_SIZES[:2])  # two plates, each with its crop, mean and 8 slot panels
    assert (output_dir / "results.json").is_file()


def test_eval_refuses_attention_maps_without_cmrm_before_any_work(crops, tmp_path):
    no_cmrm = tmp_path / "no_cmrm"
    save_tiny_checkpoint(no_cmrm, cmrm_enabled=False)
    output_dir = tmp_path / "report"
    common = ["--dataset_name", str(crops), "--output_dir", str(output_dir), "--attention_maps", "1"]
    with pytest.raises(ValueError, match=r"attention_maps.*CMRM off"):
        lpllm(["eval", "--model_name_or_path", str(no_cmrm), *common])
    with pytest.raises(ValueError, match="give the model as `model_name_or_path`"):
        lpllm(["eval", "--compare", str(no_cmrm), str(no_cmrm), *common])
    with pytest.raises(ValueError, match="must be an integer >= 0"):
        lpllm(["eval", "--model_name_or_path", str(no_cmrm), *common[:-1], "-1"])
    assert not output_dir.exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served(model_path: str):
    """The demo page of `model_path`, served on 127.0.0.1 with `lpllm demo`'s settings; yields its URL."""
    pytest.importorskip("gradio", reason="the demo needs gradio: pip install 'lpllm[demo]'")
    from lpllm.cli.demo import build_demo, launch_demo

    demo = build_demo(model_path)
    try:
        _, url, share_url = launch_demo(demo, "127.0.0.1", free_port(), block=False)
        assert share_url is None
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def demo_url(checkpoint):
    with served(checkpoint) as url:
        yield url


@pytest.fixture(scope="module")
def client(demo_url, tmp_path_factory):
    from gradio_client import Client

    return Client(demo_url, analytics_enabled=False, verbose=False, download_files=str(tmp_path_factory.mktemp("dl")))


def test_the_page_is_served_on_localhost_only(demo_url):
    assert demo_url.startswith("http://127.0.0.1:")


def test_the_page_reads_as_the_pipeline_reads(client, reader, crops):
    from gradio_client import handle_file

    crop = str(crops / "0.png")
    text, score, bars, candidates, attention = client.predict(
        handle_file(crop), 1, "auto", False, 0.0, api_name="/read"
    )
    expected = reader(crop)[0]
    assert text == expected["generated_text"] and text
    assert score == pytest.approx(expected["score"], rel=1e-4)
    assert bars.count("font-family:monospace") == len(text)  # one bar per character
    assert [row[1] for row in candidates["data"]] == [text]
    assert Image.open(attention).format == "PNG"

    text, _, _, candidates, _ = client.predict(handle_file(crop), 3, "none", False, 0.0, api_name="/read")
    expected = reader(crop, top_k=3, region=None)[0]
    assert text == expected["generated_text"]
    assert [row[1] for row in candidates["data"]] == [candidate["text"] for candidate in expected["candidates"]]

    # The tiny model's scores are far below 0.5: the page abstains as the pipeline does.
    text, _, bars, _, _ = client.predict(handle_file(crop), 1, "auto", False, 0.5, api_name="/read")
    assert text == reader(crop, min_score=0.5)[0]["generated_text"] == ""
    assert "Unreadable" in bars


def test_the_page_reads_a_track_as_the_pipeline_reads_it(client, reader, crops):
    from gradio_client import handle_file

    crop, frame = str(crops / "0.png"), str(crops / "1.png")
    text, score, _, _, _ = client.predict(
        handle_file(crop), 1, "none", False, 0.0, [handle_file(frame)], api_name="/read"
    )
    expected = reader([[crop, frame]], region=None)[0][0]
    assert text == expected["generated_text"] and score == pytest.approx(expected["score"], rel=1e-4)


def test_the_page_reports_bad_options_as_the_pipeline_words_them(client, crops):
    from gradio_client import handle_file

    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"constrain=True.*give `region` a region code"):
        client.predict(handle_file(str(crops / "0.png")), 1, "auto", True, 0.0, api_name="/read")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_a_browser_uploads_a_crop_and_sees_the_reading(checkpoint, crops, tmp_path):
    sync_playwright = pytest.importorskip(
        "playwright.sync_api", reason="the browser test needs playwright: pip install 'playwright==1.64.*'"
    ).sync_playwright
    model = os.environ.get(SCREENSHOT_MODEL) or checkpoint
    crop = os.environ.get(SCREENSHOT_CROP) or str(crops / "0.png")
    expected = pipeline("image-to-text", model=model, trust_remote_code=True)(crop)[0]["generated_text"]
    screenshot = SCREENSHOT if os.environ.get(SAVE_SCREENSHOT) == "1" else tmp_path / "demo.png"
    with served(model) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url, wait_until="domcontentloaded")
            page.locator("input[type=file]").first.set_input_files(crop)
            # The upload travels to the server before the image shows: pressing Read sooner sends no image.
            page.locator("#crop img").wait_for(state="visible", timeout=60_000)
            page.get_by_role("button", name="Read").click()
            # The attention maps come last: once they show, every output is on the page.
            page.locator("#attention img").wait_for(state="visible", timeout=120_000)
            assert page.locator("#reading textarea").input_value() == expected
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert Image.open(screenshot).format == "PNG"
