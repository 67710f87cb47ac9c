import csv
import json
import shutil

import numpy as np
import pytest
from datasets import load_from_disk
from PIL import Image
from test_dataset_fixtures import REALDATA, plate_texture, snapshot, write_bad_images, write_odd_mode_images

from dataset_scripts.crops import build_crops
from dataset_scripts.images import crop_quad, load_image, order_corners
from dataset_scripts.labels import LabelFileError
from dataset_scripts.output import OutputExistsError
from dataset_scripts.pipeline import BuildOptions
from dataset_scripts.reports import InputProblem, StrictModeError

OPTIONS = BuildOptions(progress=False, parquet=False)


def _skipped(output_dir) -> dict[str, str]:
    with open(output_dir / "skipped.csv", encoding="utf-8") as handle:
        return {row["file"]: row["reason"] for row in csv.DictReader(handle)}


def _write_labelled_crop(folder, name, color=(200, 40, 40)):
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (90, 30), color).save(folder / name)


def test_every_bad_image_kind_gets_its_reason(tmp_path):
    expected = write_bad_images(tmp_path / "bad")
    for name, code in expected.items():
        with pytest.raises(InputProblem) as caught:
            load_image(tmp_path / "bad" / name, name=name)
        assert caught.value.code == code, (name, caught.value)
        assert caught.value.file == name
    assert load_image(tmp_path / "bad" / "good.png").image.size == (120, 40)


def test_odd_modes_are_converted_to_rgb(tmp_path):
    expected = write_odd_mode_images(tmp_path)
    for name, color in expected.items():
        loaded = load_image(tmp_path / name)
        pixels = np.asarray(loaded.image)
        assert loaded.image.mode == "RGB" and pixels.dtype == np.uint8
        if color is not None:
            assert np.abs(pixels[5, 5].astype(int) - color).max() <= 2, (name, pixels[5, 5])
    sixteen = np.asarray(load_image(tmp_path / "sixteen.png").image)
    assert sixteen[0, 0].tolist() == [0, 0, 0] and sixteen[0, -1].tolist() == [255, 255, 255]


def test_corners_in_any_order_give_an_upright_crop():
    texture = plate_texture()
    image = Image.fromarray(np.pad(texture, ((10, 10), (10, 10), (0, 0))))
    corners = [(10, 10), (129, 10), (129, 49), (10, 49)]
    for start in range(4):
        rotated = corners[start:] + corners[:start]
        assert order_corners(rotated).tolist() == [list(map(float, point)) for point in corners]
        crop = crop_quad(image, rotated, "x")
        assert crop.size == (119, 39)
        assert np.abs(np.asarray(crop).astype(int)[5:-5, 5:-5] - texture[5:-6, 5:-6].astype(int)).mean() < 10
    with pytest.raises(InputProblem, match="outside"):
        crop_quad(image, [(0, 0), (500, 0), (500, 40), (0, 40)], "x")


def test_realdata_crops_build_reads_every_set_and_leaves_it_untouched(tmp_path):
    before = snapshot(REALDATA)
    result = build_crops(REALDATA, tmp_path / "out", options=OPTIONS)
    assert snapshot(REALDATA) == before
    summary = result.summary
    assert summary["subsets"] == {"lprnet_cn": 1000, "openalpr_br": 114, "openalpr_eu": 108, "openalpr_us": 222}
    assert summary["regions"] == {"BR": 114, "CN": 1000, "EU": 108, "US": 222}
    assert summary["skipped"] == 0
    dataset = load_from_disk(str(tmp_path / "out"))
    assert sum(len(split) for split in dataset.values()) == 1444
    ids = {split: set(dataset[split]["id"]) for split in dataset}
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["validation"])
    located = next(split for split in dataset if "lprnet_cn/images/京PL3N67.jpg" in ids[split])
    row = dataset[located].filter(lambda example: example["id"] == "lprnet_cn/images/京PL3N67.jpg")[0]
    assert row["text"] == "京PL3N67" and row["region"] == "CN" and row["source"] == "crops"
    assert row["images"][0].size == (94, 24) and row["num_frames"] == 1
    assert row["degradation"] == "real" and row["severity"] == -1


def test_lprnet_folder_labelled_by_file_name(tmp_path):
    folder = tmp_path / "lprnet"
    shutil.copytree(REALDATA / "lprnet_cn" / "images", folder, ignore=lambda _, names: names[20:])
    _write_labelled_crop(folder, "皖A12345_2.jpg")  # suffix after "_" is not part of the label
    _write_labelled_crop(folder, "皖AIO345.jpg")  # I and O are not on Chinese plates
    (folder / "readme.txt").write_text("hello", encoding="utf-8")
    result = build_crops(folder, tmp_path / "out", options=OPTIONS)
    texts = {text for split in result.dataset.values() for text in split["text"]}
    assert "皖A12345" in texts and len(texts) >= 20
    skipped = _skipped(tmp_path / "out")
    assert skipped["皖AIO345.jpg"].startswith("bad_label:") and "'IO'" in skipped["皖AIO345.jpg"]
    assert skipped["readme.txt"].startswith("not_an_image:")
    assert result.summary["skip_reasons"] == {"bad_label": 1, "not_an_image": 1}


def test_fast_plate_ocr_csv_and_bad_rows(tmp_path):
    images = tmp_path / "data" / "images"
    for name in ("a.png", "b.png", "c.png", "d.png", "e.png"):
        _write_labelled_crop(images, name)
    write_bad_images(tmp_path / "data" / "bad")
    rows = [
        ("images/a.png", "abc-1234", "Brazil"),  # normalised, region alias
        ("images/b.png", "", "Brazil"),  # empty label
        ("images/c.png", "AB€123", "Brazil"),  # outside the charset
        ("images/a.png", "ABC1234", "Brazil"),  # duplicate id
        ("images/missing.png", "ABC1234", "Brazil"),  # missing file
        ("images/d.png", "7ABC123", ""),  # no region: generic
        ("images/e.png", "ABC1D23", "Brazil"),
        ("bad/truncated.png", "ABC1234", "Brazil"),
        ("bad/tiny.png", "ABC1234", "Brazil"),
    ]
    csv_path = tmp_path / "data" / "train.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "plate_text", "plate_region", "extra"])
        writer.writerows([row + ("ignored",) for row in rows])
    before = snapshot(tmp_path / "data")
    result = build_crops(csv_path, tmp_path / "out", options=OPTIONS)
    assert snapshot(tmp_path / "data") == before
    by_id = {row["id"]: row for split in result.dataset.values() for row in split}
    assert set(by_id) == {"images/a.png", "images/d.png", "images/e.png"}
    assert by_id["images/a.png"]["text"] == "ABC1234" and by_id["images/a.png"]["region"] == "BR"
    assert by_id["images/d.png"]["region"] == "XX"
    skipped = _skipped(tmp_path / "out")
    assert skipped["images/b.png"].startswith("empty_label:") and "train.csv:3" in skipped["images/b.png"]
    assert skipped["images/c.png"].startswith("bad_label:") and "'€'" in skipped["images/c.png"]
    assert skipped["images/a.png"].startswith("duplicate_id:")
    assert skipped["images/missing.png"].startswith("missing_file:") and "train.csv:6" in skipped["images/missing.png"]
    assert skipped["bad/truncated.png"].startswith("corrupt_image:")
    assert skipped["bad/tiny.png"].startswith("too_small:")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["skip_reasons"] == {
        "bad_label": 1,
        "corrupt_image": 1,
        "duplicate_id": 1,
        "empty_label": 1,
        "missing_file": 1,
        "too_small": 1,
    }
    assert summary["num_samples"] == 3 and sum(summary["splits"].values()) == 3


def test_jsonl_labels_and_converted_modes(tmp_path):
    folder = tmp_path / "set"
    modes = write_odd_mode_images(folder)
    with open(folder / "labels.jsonl", "w", encoding="utf-8") as handle:
        for index, name in enumerate(modes):
            handle.write(json.dumps({"file": name, "text": f"ABC12{index}", "region": "US", "note": "x"}) + "\n")
        handle.write("{not json\n")
    result = build_crops(folder, tmp_path / "out", options=OPTIONS)
    assert result.summary["num_samples"] == 4
    assert result.summary["converted_image_modes"] == {"CMYK": 1, "I;16": 1, "L": 1, "RGBA": 1}
    assert _skipped(tmp_path / "out")["labels.jsonl:5"].startswith("malformed_row:")
    for split in result.dataset.values():
        for image in [image for images in split["images"] for image in images]:
            assert image.mode == "RGB"


def test_label_file_without_usable_header_is_an_error(tmp_path):
    (tmp_path / "labels.csv").write_text("name,value\na.png,ABC\n", encoding="utf-8")
    with pytest.raises(LabelFileError, match="no file and text columns"):
        build_crops(tmp_path, tmp_path.parent / "out_bad_header", options=OPTIONS)


def test_strict_stops_at_the_first_bad_input_and_writes_nothing(tmp_path):
    folder = tmp_path / "crops"
    _write_labelled_crop(folder, "ABC1234.png")
    (folder / "XYZ9876.png").write_bytes(b"")
    with pytest.raises(StrictModeError, match=r"XYZ9876\.png: empty_file"):
        build_crops(folder, tmp_path / "out", options=BuildOptions(strict=True, progress=False))
    assert not (tmp_path / "out").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["crops"]  # no temporary folder left behind


def test_existing_output_needs_overwrite_and_inputs_are_protected(tmp_path):
    folder = tmp_path / "crops"
    _write_labelled_crop(folder, "ABC1234.png")
    out = tmp_path / "out"
    build_crops(folder, out, options=OPTIONS)
    first = snapshot(out)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        build_crops(folder, out, options=OPTIONS)
    assert snapshot(out) == first
    _write_labelled_crop(folder, "DEF5678.png")
    result = build_crops(folder, out, options=BuildOptions(overwrite=True, progress=False, parquet=False))
    assert result.summary["num_samples"] == 2
    with pytest.raises(ValueError, match="inside the input folder"):
        build_crops(folder, folder / "out", options=OPTIONS)
    with pytest.raises(ValueError, match="inside the output folder"):
        build_crops(folder, tmp_path, options=BuildOptions(overwrite=True, progress=False))
    assert (folder / "ABC1234.png").is_file()


def test_bad_images_in_a_folder_build_are_each_reported(tmp_path):
    expected = write_bad_images(tmp_path / "bad")
    result = build_crops(tmp_path / "bad", tmp_path / "out", options=OPTIONS)
    assert [row["id"] for split in result.dataset.values() for row in split] == ["good.png"]
    skipped = _skipped(tmp_path / "out")
    assert {name: reason.split(":")[0] for name, reason in skipped.items()} == expected
    assert result.summary["skipped"] == len(expected)


def test_split_assignment_is_deterministic_and_follows_the_ratios():
    from dataset_scripts.splits import assign_split, parse_ratios

    groups = [f"plate-{index}" for index in range(4000)]
    first = [assign_split(group, 3, (0.8, 0.1, 0.1)) for group in groups]
    assert first == [assign_split(group, 3, (0.8, 0.1, 0.1)) for group in groups]
    assert first != [assign_split(group, 4, (0.8, 0.1, 0.1)) for group in groups]
    shares = {split: first.count(split) / len(first) for split in ("train", "validation", "test")}
    assert abs(shares["train"] - 0.8) < 0.03 and abs(shares["validation"] - 0.1) < 0.02
    assert parse_ratios("8,1,1") == (0.8, 0.1, 0.1)
    with pytest.raises(ValueError, match="three finite non-negative"):
        parse_ratios("0.9,0.1")
