import json

import cv2
import numpy as np
import pytest
from datasets import load_from_disk

from dataset_scripts.images import decode_image
from dataset_scripts.pipeline import BuildOptions
from dataset_scripts.regions import LAYOUTS, REGIONS
from dataset_scripts.synthetic import fonts as font_module
from dataset_scripts.synthetic.degrade import DEGRADATION_TYPES, SEVERITY_TABLE, degrade
from dataset_scripts.synthetic.fonts import FontNotFoundError, find_fonts
from dataset_scripts.synthetic.generate import SyntheticConfig, SyntheticSampleMaker, build_synthetic, synthetic_tasks
from dataset_scripts.synthetic.render import render_plate
from dataset_scripts.synthetic.styles import STYLES


@pytest.fixture(scope="module")
def fonts():
    return find_fonts(need_cjk=True)


def _dataset_content(dataset):
    """Everything in a DatasetDict, images as raw bytes, for exact comparison."""
    content = {}
    for split, data in dataset.items():
        rows = data.cast_column(
            "images", data.features["images"].__class__(data.features["images"].feature.__class__(decode=False))
        )
        content[split] = [{**row, "images": [image["bytes"] for image in row["images"]]} for row in rows]
    return content


def test_same_seed_gives_the_same_dataset_whatever_the_workers(tmp_path):
    config = SyntheticConfig(num=24)
    first = build_synthetic(tmp_path / "a", config, BuildOptions(seed=7, num_workers=0, progress=False, parquet=False))
    second = build_synthetic(
        tmp_path / "b", config, BuildOptions(seed=7, num_workers=2, progress=False, parquet=False)
    )
    other = build_synthetic(tmp_path / "c", config, BuildOptions(seed=8, num_workers=0, progress=False, parquet=False))
    assert _dataset_content(first.dataset) == _dataset_content(second.dataset)
    assert _dataset_content(first.dataset) != _dataset_content(other.dataset)
    assert first.summary["num_samples"] == 24
    reloaded = load_from_disk(str(tmp_path / "a"))
    assert _dataset_content(reloaded) == _dataset_content(first.dataset)


def test_synthetic_rows_carry_valid_labels_and_their_degradation(tmp_path):
    result = build_synthetic(tmp_path / "out", SyntheticConfig(num=40), BuildOptions(seed=1, progress=False))
    rows = [row for split in result.dataset.values() for row in split]
    assert len(rows) == 40 and len({row["id"] for row in rows}) == 40
    for row in rows:
        layout = LAYOUTS[row["subset"]]
        assert layout.matches(row["text"]) and row["region"] == layout.region
        assert REGIONS[row["region"]].validate(row["text"]) is None
        assert row["source"] == "synthetic" and row["num_frames"] == 1
        assert row["degradation"] in DEGRADATION_TYPES + ("none",)
        params = json.loads(row["degradation_params"])
        if row["degradation"] == "none":
            assert row["severity"] == 0 and params["types"] == []
        else:
            assert 1 <= row["severity"] <= 5 and params["severity"] == row["severity"]
            if row["degradation"] != "compound":
                assert params["types"] == [row["degradation"]]
        assert row["images"][0].mode == "RGB" and min(row["images"][0].size) >= 16
    assert (tmp_path / "out" / "data" / "train-00000-of-00001.parquet").is_file()
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "data/train-*.parquet" in card


def test_multi_frame_samples_are_independently_degraded_frames_of_one_plate(fonts):
    config = SyntheticConfig(num=2, frames=4, degradations=("noise",), severities=(1,), clean_fraction=0.0)
    maker = SyntheticSampleMaker(config, fonts, seed=0)
    sample, other = maker.make(0), maker.make(1)
    assert len(sample.images) == 4 and sample.degradation == "noise" and sample.severity == 1
    frames = [np.asarray(decode_image(data)).astype(int) for data in sample.images]
    assert len({frame.shape for frame in frames}) == 1
    assert all(not np.array_equal(frames[0], frame) for frame in frames[1:])  # different draws
    different_plate = cv2.resize(np.asarray(decode_image(other.images[0])), frames[0].shape[1::-1]).astype(int)
    within = max(np.abs(frames[0] - frame).mean() for frame in frames[1:])
    assert within < np.abs(frames[0] - different_plate).mean()  # same plate
    assert len(set(sample.degradation_params["frame_seeds"])) == 4


def _sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_blur_severity_is_monotonic(fonts):
    plate = render_plate("皖A12345", "cn_blue", STYLES["cn_blue"], fonts, np.random.default_rng(0))
    for kind in ("gaussian_blur", "defocus", "motion_blur", "low_resolution"):
        # Averaged over draws: a motion blur along the strokes blurs less than one across them.
        sharpness = [
            np.mean([_sharpness(degrade(plate, (kind,), level, seed)) for seed in range(8)]) for level in range(1, 6)
        ]
        assert sharpness == sorted(sharpness, reverse=True), (kind, sharpness)
        assert sharpness[0] < _sharpness(plate)


def test_every_degradation_runs_at_every_severity(fonts):
    plate = render_plate("ABC1D23", "br_mercosur", STYLES["br_mercosur"], fonts, np.random.default_rng(0))
    for kind in SEVERITY_TABLE:
        for level in range(1, 6):
            out = degrade(plate, (kind,), level, seed=level)
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
            assert not np.array_equal(out, plate), (kind, level)
            assert np.array_equal(out, degrade(plate, (kind,), level, seed=level)), (kind, level)


def test_dark_and_overexposure_move_brightness(fonts):
    plate = render_plate("ABC1234", "br_old", STYLES["br_old"], fonts, np.random.default_rng(0))
    assert degrade(plate, ("dark",), 4, seed=0).mean() < plate.mean() - 30
    assert degrade(plate, ("overexposure",), 4, seed=0).mean() > plate.mean() + 20


def test_rendered_text_is_where_the_style_says(fonts):
    """A clean cn_blue plate has bright glyph ink on blue; a different text gives a different image."""
    first = render_plate("皖A12345", "cn_blue", STYLES["cn_blue"], fonts, np.random.default_rng(0))
    second = render_plate("皖A67890", "cn_blue", STYLES["cn_blue"], fonts, np.random.default_rng(0))
    assert first.shape == second.shape
    assert first[..., 2].mean() > first[..., 0].mean() + 40  # blue plate
    assert (first.min(axis=2) > 200).mean() > 0.1  # white characters
    width = first.shape[1]
    assert np.array_equal(first[:, : width // 3], second[:, : width // 3])  # same province and letter
    assert not np.array_equal(first[:, width // 2 :], second[:, width // 2 :])


def test_missing_fonts_fail_with_install_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(font_module, "SYSTEM_CJK_FONTS", ())
    monkeypatch.setattr(font_module, "cjk_candidates", lambda: [str(tmp_path / "nothing.ttc")])
    with pytest.raises(FontNotFoundError, match=r"fonts-wqy-microhei.*pip install pylopdf-fonts-zh-cn"):
        find_fonts(need_cjk=True)
    assert find_fonts(need_cjk=False).cjk is None  # other regions still render
    with pytest.raises(FontNotFoundError, match="CJK"):
        build_synthetic(tmp_path / "out", SyntheticConfig(num=2, regions=("CN",)), BuildOptions(progress=False))
    assert not (tmp_path / "out").exists()


def test_bad_synthetic_config_is_refused():
    with pytest.raises(ValueError, match="Cannot synthesise"):
        SyntheticConfig(regions=("XX",)).resolved_layouts()
    with pytest.raises(ValueError, match="Unknown degradation"):
        SyntheticConfig(degradations=("sepia",)).resolved_layouts()
    with pytest.raises(ValueError, match="Severities"):
        SyntheticConfig(severities=(9,)).resolved_layouts()


def test_compound_degradations_combine_two_or_three_compatible_types():
    from dataset_scripts.synthetic.degrade import compound_parts

    rng = np.random.default_rng(0)
    order = list(SEVERITY_TABLE)
    for _ in range(200):
        parts = compound_parts(rng)
        assert 2 <= len(parts) <= 3 and len(set(parts)) == len(parts)
        assert not {"dark", "overexposure"} <= set(parts)
        assert list(parts) == sorted(parts, key=order.index)


def test_synthetic_samples_are_grouped_into_splits_by_their_plate_text(fonts):
    config = SyntheticConfig(num=6, layouts=("br_old",), degradations=("noise",), severities=(1,))
    maker = SyntheticSampleMaker(config, fonts, seed=3)
    groups = [task.group for task in synthetic_tasks(maker, config.num)]
    assert groups == [maker.make(index).text for index in range(config.num)]


def test_free_texts_break_the_layout_pattern_and_keep_two_row_layouts(fonts):
    layouts = ("br_old", "cn_blue", "cn_yellow_two_row")
    config = SyntheticConfig(num=60, layouts=layouts, degradations=("noise",), severities=(1,), free_text_fraction=1.0)
    maker = SyntheticSampleMaker(config, fonts, seed=0)
    samples = [maker.make(index) for index in range(config.num)]
    for sample in samples:
        layout = LAYOUTS[sample.degradation_params["layout"]]
        if len(layout.rows) > 1:
            assert layout.matches(sample.text)  # two-row layouts keep their pattern: the rows need it
            continue
        core = sample.text[1:] if layout.region == "CN" else sample.text
        assert 5 <= len(sample.text) <= 8 and core.isascii() and core.isalnum()
        if layout.region == "CN":
            assert sample.text[0] in layout.positions[0]
        # a label its region cannot hold is filed under the generic region, never under a wrong rule
        assert sample.region == layout.region or REGIONS[layout.region].validate(sample.text) is not None
    assert any(not LAYOUTS[sample.subset].matches(sample.text) for sample in samples)
    assert len({len(sample.text) for sample in samples}) >= 3


def test_free_text_fraction_zero_draws_what_builds_without_it_drew(fonts):
    plain = SyntheticSampleMaker(SyntheticConfig(num=5, layouts=("us_lllnnnn",)), fonts, seed=1)
    zero = SyntheticSampleMaker(SyntheticConfig(num=5, layouts=("us_lllnnnn",), free_text_fraction=0.0), fonts, seed=1)
    assert [plain.plate_text(index) for index in range(5)] == [zero.plate_text(index) for index in range(5)]
    with pytest.raises(ValueError, match="free_text_fraction"):
        SyntheticConfig(free_text_fraction=1.5).resolved_layouts()


def test_a_one_row_layout_prints_a_longer_free_text_whole():
    assert LAYOUTS["br_old"].split_rows("ABC12345") == ["ABC12345"]
