"""CCPD, RodoSol and MDLP builders on small layouts made here."""

import csv

import numpy as np
import pytest
from PIL import Image
from test_dataset_fixtures import TILTED, check_upright_plate, scene_with_plate, snapshot, write_ccpd_image

from dataset_scripts.ccpd import build_ccpd, encode_ccpd_name, parse_ccpd_name
from dataset_scripts.mdlp import build_mdlp
from dataset_scripts.pipeline import BuildOptions
from dataset_scripts.reports import StrictModeError
from dataset_scripts.rodosol import build_rodosol

OPTIONS = BuildOptions(progress=False, parquet=False)


def _skipped(output_dir) -> dict[str, str]:
    with open(output_dir / "skipped.csv", encoding="utf-8") as handle:
        return {row["file"]: row["reason"] for row in csv.DictReader(handle)}


def _rows(result) -> dict[str, dict]:
    return {row["id"]: {**row, "split": split} for split, dataset in result.dataset.items() for row in dataset}


def test_ccpd_name_round_trip_and_tables():
    name = "025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15"
    annotation = parse_ccpd_name(name)
    assert annotation.text == "皖AY339S"
    assert annotation.corners == ((386, 473), (177, 454), (154, 383), (363, 402))
    assert annotation.brightness == 37 and annotation.blurriness == 15
    assert encode_ccpd_name("皖AY339S", annotation.corners, annotation.bbox, "025", "95_113", 37, 15) == name
    green = parse_ccpd_name(encode_ccpd_name("皖AD12345", [(9, 9), (0, 9), (0, 0), (9, 0)]))
    assert green.text == "皖AD12345"


@pytest.mark.parametrize(
    "name, message",
    [
        ("image_001", "expected 7"),
        ("025-95_113-154&383_386&473-386&473_177&454_154&383-0_0_22_27_27_33_16-37-15", "4 corners"),
        ("025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_99_16-37-15", "outside its table"),
        ("025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-33_0_22_27_27_33_16-37-15", "placeholder"),
        ("025-95_113-154&383_386&473-386&473_177&454_154&383_363&x-0_0_22_27_27_33_16-37-15", "corners field"),
        ("025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22-37-15", "7 or 8"),
    ],
)
def test_malformed_ccpd_names_say_which_field(name, message):
    with pytest.raises(ValueError, match=message):
        parse_ccpd_name(name)


def test_ccpd_build_crops_upright_plates_and_reports_bad_files(tmp_path):
    root = tmp_path / "CCPD2019"
    plates = ["皖A12345", "沪B7C8D9", "京QF0000", "粤Z8888A"]
    for index, text in enumerate(plates):
        write_ccpd_image(root / ("ccpd_blur" if index % 2 else "ccpd_base"), text, seed=index)
    green = root.parent / "CCPD2020" / "ccpd_green"
    write_ccpd_image(green / "test", "皖AD12345")
    (root / "ccpd_base" / "not-a-ccpd-name.jpg").write_bytes(b"")
    Image.new("RGB", (40, 40)).save(
        root / "ccpd_base" / (encode_ccpd_name("皖A99999", [(300, 300), (200, 300), (200, 200), (300, 200)]) + ".jpg")
    )
    truncated = write_ccpd_image(root / "ccpd_challenge", "皖A54321")
    truncated.write_bytes(truncated.read_bytes()[:400])
    before = snapshot(root)

    result = build_ccpd(root, tmp_path / "out", OPTIONS)
    assert snapshot(root) == before
    rows = _rows(result)
    assert sorted(row["text"] for row in rows.values()) == sorted(plates)
    for row in rows.values():
        check_upright_plate(row["images"][0])
        assert row["region"] == "CN" and row["source"] == "ccpd"
    assert {row["subset"] for row in rows.values()} == {"ccpd_base", "ccpd_blur"}
    skipped = _skipped(tmp_path / "out")
    assert skipped["ccpd_base/not-a-ccpd-name.jpg"].startswith("malformed_ccpd_name:")
    assert any(reason.startswith("bad_corners:") for reason in skipped.values())
    assert any(
        file.startswith("ccpd_challenge/") and reason.startswith("corrupt_image:") for file, reason in skipped.items()
    )

    green_result = build_ccpd(green, tmp_path / "green", OPTIONS)
    assert green_result.summary["splits"] == {"train": 0, "validation": 0, "test": 1}  # from the test/ folder
    assert green_result.dataset["test"][0]["text"] == "皖AD12345"


def test_ccpd_strict_names_the_file(tmp_path):
    write_ccpd_image(tmp_path / "ccpd_base", "皖A12345")
    (tmp_path / "ccpd_base" / "broken-name.jpg").write_bytes(b"x")
    with pytest.raises(StrictModeError, match=r"ccpd_base/broken-name\.jpg: malformed_ccpd_name"):
        build_ccpd(tmp_path, tmp_path.parent / "strict_out", BuildOptions(strict=True, progress=False))
    assert not (tmp_path.parent / "strict_out").exists()


def _write_rodosol(root, index, subset, plate, corners_tl_tr_br_bl, layout="Brazilian", corner_order=(0, 1, 2, 3)):
    folder = root / "images" / subset
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene_with_plate(corners_tl_tr_br_bl, seed=index)).save(
        folder / f"img_{index:06d}.jpg", quality=95
    )
    corners = " ".join(f"{x},{y}" for x, y in (corners_tl_tr_br_bl[i] for i in corner_order))
    text = f"type: car\nlayout: {layout}\nplate: {plate}\ncorners: {corners}\n"
    (folder / f"img_{index:06d}.txt").write_text(text, encoding="utf-8")
    return f"images/{subset}/img_{index:06d}.jpg"


def test_rodosol_build_keeps_its_split_and_crops_by_corners(tmp_path):
    root = tmp_path / "rodosol"
    first = _write_rodosol(root, 1, "cars-br", "ABC-1234", TILTED)
    second = _write_rodosol(root, 2, "cars-me", "ABC1D23", TILTED, layout="Mercosur", corner_order=(2, 3, 0, 1))
    third = _write_rodosol(root, 3, "cars-br", "QWE9876", TILTED)
    _write_rodosol(root, 4, "cars-br", "AB", TILTED)  # too short for a Brazilian plate
    (root / "images" / "cars-br" / "img_000005.jpg").write_bytes((root / first).read_bytes())  # no annotation
    bad = _write_rodosol(root, 6, "cars-br", "ZZZ1111", TILTED)
    (root / bad).with_suffix(".txt").write_text("type: car\nplate: ZZZ1111\ncorners: 1,2 3,4\n", encoding="utf-8")
    (root / "split.txt").write_text(f"./{first};training\n./{second};testing\n{third};validation\n", encoding="utf-8")

    result = build_rodosol(root, tmp_path / "out", OPTIONS)
    rows = _rows(result)
    assert {row_id: row["split"] for row_id, row in rows.items()} == {
        first: "train",
        second: "test",
        third: "validation",
    }
    assert rows[first]["text"] == "ABC1234" and rows[first]["subset"] == "car-brazilian"
    assert rows[second]["subset"] == "car-mercosur"
    for row in rows.values():
        check_upright_plate(row["images"][0])
    skipped = _skipped(tmp_path / "out")
    assert skipped["images/cars-br/img_000004.jpg"].startswith("bad_label:")
    assert skipped["images/cars-br/img_000005.jpg"].startswith("missing_annotation:")
    assert skipped["images/cars-br/img_000006.txt"].startswith("malformed_annotation:")


def _write_mdlp_group(root, split, group, frames, clear_name=None, size=(96, 32)):
    inputs = root / split / "inputs" / group
    inputs.mkdir(parents=True, exist_ok=True)
    for frame in range(frames):
        shade = 40 * (frame + 1)
        Image.new("RGB", size, (shade, shade, shade)).save(inputs / f"{group}_{frame + 1}.jpg")
    if clear_name:
        gt = root / split / "gt" / group
        gt.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (250, 250, 250)).save(gt / clear_name)


def test_mdlp_multi_frame_and_single_frame_samples(tmp_path):
    root = tmp_path / "MDLP"
    _write_mdlp_group(root, "train", "0001", 3, "皖A12345.jpg")
    _write_mdlp_group(root, "train", "0002", 3, "皖B54321.jpg")
    _write_mdlp_group(root, "test", "0003", 3, "沪C11111.jpg")
    _write_mdlp_group(root, "test", "0004", 2, "沪D22222.jpg")  # too few frames
    _write_mdlp_group(root, "test", "0005", 3, "unreadable.jpg")  # no plate text anywhere
    (root / "labels.csv").write_text("file,text\n0002,皖B99999\n", encoding="utf-8")  # label file wins

    result = build_mdlp(root, tmp_path / "out", frames=3, single_frames=True, options=OPTIONS)
    rows = _rows(result)
    multi = {row_id: row for row_id, row in rows.items() if row["subset"] == "multi_frame"}
    assert set(multi) == {"train/inputs/0001", "train/inputs/0002", "test/inputs/0003"}
    group = multi["train/inputs/0001"]
    assert group["num_frames"] == 3 and len(group["images"]) == 3
    assert [np.asarray(image)[0, 0, 0] for image in group["images"]] == pytest.approx(
        [40, 80, 120], abs=3
    )  # frame order
    assert [part["type"] for part in group["prompt"][0]["content"]] == ["image", "image", "image", "text"]
    assert group["text"] == "皖A12345" and group["split"] == "train"
    assert multi["train/inputs/0002"]["text"] == "皖B99999"
    assert multi["test/inputs/0003"]["split"] == "test"
    singles = [row for row in rows.values() if row["subset"] in ("single_frame", "clear_frame")]
    assert len(singles) == 3 * 4 and all(row["num_frames"] == 1 for row in singles)
    for row in singles:  # frames of a group share its split
        group_id = "/".join(row["id"].replace("/gt/", "/inputs/").split("/")[:3])
        assert row["split"] == multi[group_id]["split"] and row["text"] == multi[group_id]["text"]
    skipped = _skipped(tmp_path / "out")
    assert skipped["test/inputs/0004"].startswith("too_few_frames:")
    assert skipped["test/inputs/0005"].startswith("bad_label:")


def test_mdlp_missing_layout_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="inputs/"):
        build_mdlp(tmp_path, tmp_path.parent / "mdlp_out", options=OPTIONS)
