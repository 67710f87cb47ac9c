"""Helpers that make small input fixtures for the dataset-builder tests (no tests here).

Scenes hold a "plate" texture warped into a known quadrilateral, so a builder's perspective crop can be checked
against the texture: left half red, right half blue, a green band along the top.
"""

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dataset_scripts.ccpd import encode_ccpd_name

PLATE_SIZE = (120, 40)  # width, height of the texture

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def plate_texture(width: int = PLATE_SIZE[0], height: int = PLATE_SIZE[1]) -> np.ndarray:
    texture = np.zeros((height, width, 3), np.uint8)
    texture[:, : width // 2] = (220, 30, 30)
    texture[:, width // 2 :] = (30, 30, 220)
    texture[: height // 4] = (30, 200, 30)
    return texture


def scene_with_plate(corners_tl_tr_br_bl, size=(320, 240), seed: int = 0) -> np.ndarray:
    """A gray noisy scene with `plate_texture()` warped onto the quadrilateral (TL, TR, BR, BL)."""
    rng = np.random.default_rng(seed)
    width, height = size
    scene = rng.integers(90, 130, size=(height, width, 3), dtype=np.uint8)
    texture = plate_texture()
    source = np.float32(
        [[0, 0], [PLATE_SIZE[0] - 1, 0], [PLATE_SIZE[0] - 1, PLATE_SIZE[1] - 1], [0, PLATE_SIZE[1] - 1]]
    )
    matrix = cv2.getPerspectiveTransform(source, np.float32(corners_tl_tr_br_bl))
    warped = cv2.warpPerspective(texture, matrix, size)
    mask = cv2.warpPerspective(np.full(texture.shape[:2], 255, np.uint8), matrix, size)
    scene[mask > 127] = warped[mask > 127]
    return scene


def check_upright_plate(image: Image.Image) -> None:
    """Asserts that `image` is the plate texture, upright: red left, blue right, green on top."""
    array = np.asarray(image.convert("RGB")).astype(int)
    height, width = array.shape[:2]
    assert width > height, f"crop {width}x{height} is not a wide plate"
    lower = array[height // 2 :]
    left, right = lower[:, : width // 3].mean(axis=(0, 1)), lower[:, -width // 3 :].mean(axis=(0, 1))
    top = array[: max(1, height // 8), width // 3 : -width // 3].mean(axis=(0, 1))
    assert left[0] > 150 and left[2] < 90, f"left of the plate is not red: {left}"
    assert right[2] > 150 and right[0] < 90, f"right of the plate is not blue: {right}"
    assert top[1] > 150 and top[0] < 90, f"top of the plate is not green: {top}"


# A tilted plate: TL, TR, BR, BL.
TILTED = [(60, 100), (230, 80), (240, 140), (70, 165)]


def write_ccpd_image(folder: Path, text: str, corners_tl_tr_br_bl=TILTED, seed: int = 0) -> Path:
    top_left, top_right, bottom_right, bottom_left = corners_tl_tr_br_bl
    ccpd_order = [bottom_right, bottom_left, top_left, top_right]
    name = encode_ccpd_name(text, ccpd_order) + ".jpg"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(scene_with_plate(corners_tl_tr_br_bl, seed=seed)).save(path, quality=95)
    return path


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims `width` x `height` (a decompression bomb's signature) with no real data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def write_bad_images(folder: Path) -> dict[str, str]:
    """One file per kind of unusable image; returns file name -> the skip code the builders must give."""
    folder.mkdir(parents=True, exist_ok=True)
    good = Image.fromarray(plate_texture())
    good.save(folder / "good.png")
    data = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image", encoding="utf-8")
    corrupt = bytearray(data)
    corrupt[60:200] = b"\x00" * 140
    (folder / "corrupt.png").write_bytes(bytes(corrupt))
    png_header_only(folder / "bomb.png", 60000, 60000)
    Image.new("RGB", (1, 1), (255, 0, 0)).save(folder / "tiny.png")
    Image.new("RGB", (10000, 10), (255, 0, 0)).save(folder / "sliver.png")
    return {
        "truncated.png": "corrupt_image",
        "empty.jpg": "empty_file",
        "notes.jpg": "not_an_image",
        "corrupt.png": "corrupt_image",
        "bomb.png": "too_large",
        "tiny.png": "too_small",
        "sliver.png": "bad_aspect_ratio",
    }


def write_odd_mode_images(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Valid images in modes that need conversion; returns file name -> the RGB colour expected after it."""
    folder.mkdir(parents=True, exist_ok=True)
    size = (60, 20)
    Image.new("CMYK", size, (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=100)  # pure red in CMYK
    rgba = Image.new("RGBA", size, (0, 0, 255, 0))  # fully transparent: white once flattened
    rgba.save(folder / "rgba.png")
    Image.new("L", size, 128).save(folder / "gray.png")
    # 16-bit gray, left half black, right half white (a PNG with 16 bits per sample).
    sixteen = Image.fromarray(np.repeat(np.array([[0] * 30 + [65535] * 30], dtype=np.uint16), 20, axis=0))
    sixteen.save(folder / "sixteen.png")
    return {"cmyk.jpg": (255, 0, 0), "rgba.png": (255, 255, 255), "gray.png": (128, 128, 128), "sixteen.png": None}


def snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    """Size and modification time of every file under `folder` (to check that inputs are never modified)."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime)
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file()
    }
