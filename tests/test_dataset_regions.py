import csv

import numpy as np
import pytest
from test_dataset_fixtures import REALDATA

from dataset_scripts import regions
from dataset_scripts.regions import GENERIC_REGION, LAYOUTS, REGIONS, get_region, normalize_plate_text
from dataset_scripts.synthetic.styles import DEFAULT_LAYOUTS, STYLES
from modeling_lpllm.tokenization_lpllm import CN_PROVINCES, DEFAULT_PLATE_CHARSET


def test_every_region_charset_is_within_the_tokenizer_charset():
    for region in REGIONS.values():
        outside = set(region.charset) - set(DEFAULT_PLATE_CHARSET)
        assert not outside, f"{region.code} charset has {outside} that the tokenizer cannot spell"
    for layout in LAYOUTS.values():
        for allowed in layout.positions:
            assert set(allowed) <= set(REGIONS[layout.region].charset), layout.name


def test_cn_provinces_come_from_the_tokenizer_and_cn_plates_have_no_i_or_o():
    assert regions.CN_PROVINCES is CN_PROVINCES
    assert len(CN_PROVINCES) == 31
    cn = REGIONS["CN"]
    assert "I" not in cn.charset and "O" not in cn.charset
    assert LAYOUTS["cn_blue"].positions[0] == CN_PROVINCES
    assert cn.validate("皖A12345") is None
    message = cn.validate("皖AI2345")
    assert "'I'" in message and "CN" in message


def test_layout_patterns_per_position():
    assert LAYOUTS["br_old"].matches("ABC1234") and not LAYOUTS["br_old"].matches("ABC1D23")
    assert LAYOUTS["br_mercosur"].matches("ABC1D23") and not LAYOUTS["br_mercosur"].matches("ABC1234")
    assert LAYOUTS["cn_green_small"].matches("皖AD12345") and not LAYOUTS["cn_green_small"].matches("皖A12345")
    assert LAYOUTS["cn_green_large"].matches("皖A12345F")
    assert LAYOUTS["cn_yellow_two_row"].split_rows("皖A12345") == ["皖A", "12345"]
    assert REGIONS["BR"].layout_of("ABC1D23").name == "br_mercosur"


def test_sampled_texts_fit_their_layout_and_region():
    rng = np.random.default_rng(0)
    for name, layout in LAYOUTS.items():
        for _ in range(20):
            text = layout.sample(rng)
            assert layout.matches(text), (name, text)
            assert REGIONS[layout.region].validate(text) is None, (name, text)


def test_every_default_synthetic_layout_has_a_style():
    for code, names in DEFAULT_LAYOUTS.items():
        for name in names:
            assert name in STYLES and LAYOUTS[name].region == code
    for name, style in STYLES.items():
        assert len(style.rows) == len(LAYOUTS[name].rows), name


def test_validate_explains_the_problem():
    assert "empty" in REGIONS["US"].validate("")
    assert "8" in REGIONS["US"].validate("ABCDEFGHJ")  # 9 characters, US plates have at most 8
    assert "'Ä'" in REGIONS["EU"].validate("BÄ123")


def test_normalize_and_region_lookup():
    assert normalize_plate_text(" 皖a-123·45 ") == "皖A12345"
    assert normalize_plate_text("ＡＢＣ１２３") == "ABC123"  # full-width
    assert normalize_plate_text("а 123-вс") == "А123ВС"  # Cyrillic upper-cased
    assert normalize_plate_text("٣٢١ ﺏ") == "٣٢١ب"  # Eastern Arabic digits kept, presentation form -> letter
    assert normalize_plate_text("12가 3456") == "12가3456"
    assert normalize_plate_text("ßa") == "ßA"  # no letter becomes two
    assert get_region("Brazil").code == "BR"
    assert get_region("br").code == "BR"
    assert get_region(None) is GENERIC_REGION
    assert get_region("Atlantis") is GENERIC_REGION


@pytest.mark.parametrize("name", ["lprnet_cn", "openalpr_us", "openalpr_br", "openalpr_eu"])
def test_real_labels_are_valid_for_their_region(name):
    with open(REALDATA / name / "labels.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for row in rows:
        assert REGIONS[row["region"]].validate(normalize_plate_text(row["text"])) is None, row


def test_labels_of_regions_outside_the_table_may_use_any_script_and_known_regions_keep_their_charset():
    for label in ("А123ВС", "٣٢١بجد", "۱۲۳ب", "12가3456", "กข1234", "AB12"):
        assert GENERIC_REGION.validate(label) is None, label
        assert get_region("RU").validate(label) is None, label  # a code not in the table: the generic region
    assert "'#'" in GENERIC_REGION.validate("AB#1")  # symbols are not plate characters
    assert "any script" in GENERIC_REGION.validate("AB#1")
    assert "'Ж'" in REGIONS["EU"].validate("Ж123")
