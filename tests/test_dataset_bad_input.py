"""Bad input to the dataset builder: nothing a user made is deleted, no plate straddles splits, and a build that
would be empty or read outside its input stops with the reason named (or skips the input with it)."""

import csv
import json
from pathlib import Path

import pytest
from PIL import Image
from test_dataset_fixtures import snapshot, write_ccpd_image

from dataset_scripts import build
from dataset_scripts.ccpd import build_ccpd
from dataset_scripts.crops import build_crops
from dataset_scripts.mdlp import build_mdlp
from dataset_scripts.output import OutputExistsError
from dataset_scripts.pipeline import BuildOptions
from dataset_scripts.reports import NoSamplesError

OPTIONS = BuildOptions(progress=False, parquet=False)


def _crop(path: Path, shade: int = 200) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (90, 30), (shade, 40, 40)).save(path)
    return path


def _build(*arguments) -> int:
    return build.main([*arguments, "--workers", "0", "--quiet", "--parquet", "false"])


def _skipped(output_dir: Path) -> dict[str, str]:
    with open(output_dir / "skipped.csv", encoding="utf-8") as handle:
        return {row["file"]: row["reason"] for row in csv.DictReader(handle)}


def test_overwrite_replaces_only_a_dataset_the_builder_wrote(tmp_path, capsys):
    crops = tmp_path / "crops"
    _crop(crops / "ABC1234.png")
    mine = tmp_path / "my_files"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    before = snapshot(mine)

    assert _build("--source", "crops", "--input", str(crops), "--output", str(mine), "--overwrite") == 1
    error = capsys.readouterr().err
    assert str(mine) in error and "not a dataset" in error and "thesis.tex" in error
    assert snapshot(mine) == before

    built = tmp_path / "built"
    assert _build("--source", "crops", "--input", str(crops), "--output", str(built)) == 0
    _crop(crops / "DEF5678.png")
    assert _build("--source", "crops", "--input", str(crops), "--output", str(built), "--overwrite") == 0
    assert json.loads((built / "summary.json").read_text())["num_samples"] == 2

    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder holds nothing to lose: no --overwrite needed
    assert _build("--source", "crops", "--input", str(crops), "--output", str(empty)) == 0
    with pytest.raises(OutputExistsError, match="not a dataset"):
        build_crops(crops, mine, options=BuildOptions(overwrite=True, progress=False, parquet=False))


def _splits_by_text(result) -> dict[str, set[str]]:
    splits = {}
    for split, dataset in result.dataset.items():
        for text in dataset["text"]:
            splits.setdefault(text, set()).add(split)
    return splits


def test_repeats_of_one_plate_share_a_split_whatever_the_layout(tmp_path):
    ratios = (1 / 3, 1 / 3, 1 / 3)
    options = BuildOptions(progress=False, parquet=False, ratios=ratios)
    plates = [f"ABC{index:04d}" for index in range(12)]
    by_name = tmp_path / "by_name"
    for index, plate in enumerate(plates):
        for repeat in ("", "_2", "_3"):
            _crop(by_name / f"{plate}{repeat}.png", 100 + index)
    result = build_crops(by_name, tmp_path / "out_by_name", region="US", options=options)
    assert result.summary["num_samples"] == 36
    assert all(len(splits) == 1 for splits in _splits_by_text(result).values())

    labelled = tmp_path / "labelled"
    rows = []
    for index, plate in enumerate(plates):
        for repeat in range(3):
            _crop(labelled / f"crop_{index}_{repeat}.png", 100 + index)
            rows.append(f"crop_{index}_{repeat}.png,{plate.lower()[:3]}-{plate[3:]}")  # one plate, spelt two ways
    (labelled / "labels.csv").write_text("file,text\n" + "\n".join(rows) + "\n")
    result = build_crops(labelled, tmp_path / "out_labelled", region="US", options=options)
    assert all(len(splits) == 1 for splits in _splits_by_text(result).values())

    mdlp = tmp_path / "mdlp"
    for index in range(24):  # two groups of each plate
        plate = f"皖A{index // 2:05d}"
        for frame in range(3):
            _crop(mdlp / "inputs" / f"g{index:03d}" / f"f_{frame + 1}.png", 100 + index)
        _crop(mdlp / "gt" / f"g{index:03d}" / f"{plate}.png")
    result = build_mdlp(mdlp, tmp_path / "out_mdlp", options=options)
    assert result.summary["num_samples"] == 24
    assert all(len(splits) == 1 for splits in _splits_by_text(result).values())


@pytest.mark.parametrize(
    "arguments, field",
    [
        (["--num", "0"], "`num`"),
        (["--splits", "nan", "1", "1"], "`splits`"),
        (["--splits", "inf", "1", "1"], "`splits`"),
        (["--splits", "0", "0", "0"], "`splits`"),
        (["--splits", "-1", "1", "1"], "`splits`"),
        (["--frames", "0"], "`frames`"),
        (["--seed", "-1"], "`seed`"),
        (["--prompt", " "], "`prompt`"),
    ],
)
def test_arguments_that_would_build_nothing_or_guess_are_refused_before_work(tmp_path, capsys, arguments, field):
    crops = tmp_path / "crops"
    _crop(crops / "ABC1234.png")
    assert _build("--source", "crops", "--input", str(crops), "--output", str(tmp_path / "out"), *arguments) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_inputs_that_give_no_sample_are_an_error_naming_the_input_and_the_skips(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _build("--source", "crops", "--input", str(empty), "--output", str(tmp_path / "out")) == 1
    assert "no sample" in capsys.readouterr().err

    header_only = tmp_path / "header_only"
    header_only.mkdir()
    (header_only / "labels.csv").write_text("file,text\n")
    with pytest.raises(NoSamplesError, match="header_only"):
        build_crops(header_only, tmp_path / "out", options=OPTIONS)

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ABC1234.png").write_bytes(b"")
    assert _build("--source", "crops", "--input", str(broken), "--output", str(tmp_path / "out")) == 1
    error = capsys.readouterr().err
    assert "no sample" in error and "empty_file" in error and "ABC1234.png" in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken", "empty", "header_only"]


def test_hidden_files_and_folders_are_skipped_with_a_reason(tmp_path):
    crops = tmp_path / "crops"
    _crop(crops / "ABC1234.png")
    _crop(crops / ".hidden.png")
    _crop(crops / ".git" / "DEF5678.png")
    _crop(crops / ".git" / "GHI9012.png")
    result = build_crops(crops, tmp_path / "out", region="US", options=OPTIONS)
    assert [row["text"] for split in result.dataset.values() for row in split] == ["ABC1234"]
    skipped = _skipped(tmp_path / "out")
    assert skipped[".hidden.png"].startswith("hidden_file:")
    assert skipped[".git/"].startswith("hidden_folder:")
    assert len(skipped) == 2

    mdlp = tmp_path / "mdlp"
    for frame in range(3):
        _crop(mdlp / "inputs" / "g1" / f"f_{frame + 1}.png")
        _crop(mdlp / "inputs" / ".g2" / f"f_{frame + 1}.png")
    _crop(mdlp / "inputs" / "g1" / "._f_0.png")
    _crop(mdlp / "gt" / "g1" / "皖A12345.png")
    result = build_mdlp(mdlp, tmp_path / "out_mdlp", options=OPTIONS)
    assert result.summary["num_samples"] == 1
    assert [row["num_frames"] for split in result.dataset.values() for row in split] == [3]
    skipped = _skipped(tmp_path / "out_mdlp")
    assert set(skipped) == {"inputs/.g2/", "inputs/g1/._f_0.png"}


def test_hidden_scene_folders_are_skipped_with_a_reason(tmp_path):
    root = tmp_path / "CCPD2019"
    write_ccpd_image(root / "ccpd_base", "皖A12345")
    write_ccpd_image(root / ".Trash-1000" / "ccpd_base", "沪B7C8D9", seed=1)
    result = build_ccpd(root, tmp_path / "out", options=OPTIONS)
    assert [row["text"] for split in result.dataset.values() for row in split] == ["皖A12345"]
    assert _skipped(tmp_path / "out") == {
        ".Trash-1000/": "hidden_folder: hidden folder (its name starts with '.'); not read as input"
    }


def test_label_file_paths_leading_outside_its_folder_are_skipped(tmp_path):
    secret = _crop(tmp_path / "elsewhere" / "secret.png")
    crops = tmp_path / "crops"
    _crop(crops / "inside.png")
    _crop(crops / "other.png")
    (crops / "labels.csv").write_text(
        f"file,text\ninside.png,ABC1234\n{secret},DEF5678\n../elsewhere/secret.png,GHI9012\nsub/../other.png,JKL3456\n"
    )
    result = build_crops(crops, tmp_path / "out", region="US", options=OPTIONS)
    assert sorted(row["text"] for split in result.dataset.values() for row in split) == ["ABC1234", "JKL3456"]
    skipped = _skipped(tmp_path / "out")
    assert skipped["labels.csv:3"].startswith("outside_input:") and "absolute" in skipped["labels.csv:3"]
    assert skipped["labels.csv:4"].startswith("outside_input:") and ".." in skipped["labels.csv:4"]
