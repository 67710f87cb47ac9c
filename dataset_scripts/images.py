"""Reading input images safely, cutting plates out by their corners, and encoding samples.

Every reader goes through `load_image`, which passes each file through the model package's image gate
(`modeling_lpllm.image_checks`, the pipeline's and the evaluation's too), turns each way an image file can be
unusable (empty, not an image, truncated, a decompression bomb, 1x1, 10000x10) into an `InputProblem` with a clear
reason, and normalises the rest (CMYK, 16-bit, RGBA, grayscale, palette) to 8-bit RGB with the processor's own
`to_rgb`.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from modeling_lpllm.image_checks import (
    PLATE_IMAGE_LIMITS,
    ImageInputError,
    ImageLimits,
    check_image_size,
    open_image,
    to_rgb,
)

from .reports import InputProblem

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


def image_files(folder: Path, source: str) -> list[Path]:
    """The image files anywhere under `folder`, in a stable order.

    Raises:
        FileNotFoundError: `folder` is not a folder (the message names `source`, e.g. "CCPD input").
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{source} {folder} is not a folder.")
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS)


#: Limits for plate crops: the model package's, which the pipeline and the processor check too.
CROP_LIMITS = PLATE_IMAGE_LIMITS
#: Limits for whole scenes that plates are cut from (CCPD, RodoSol).
SCENE_LIMITS = ImageLimits(min_side=16, max_aspect=10.0)


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # 8-bit RGB
    original_mode: str


def describe(path: Path, root: Path | None) -> str:
    """`path` relative to `root` when it is inside it (as users see it in their folder), else absolute."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix() if root else str(path)
    except ValueError:
        return str(Path(path).resolve())


def load_image(
    path: Path, limits: ImageLimits = CROP_LIMITS, name: str | None = None, exif_transpose: bool = False
) -> LoadedImage:
    """Opens, checks and decodes `path` into 8-bit RGB.

    Args:
        path: The image file.
        limits: Sizes the image must have.
        name: How the file is named in error messages (default: `path`).
        exif_transpose: Apply the EXIF orientation tag (for crops from cameras; not for scenes whose annotations
            are in stored pixel coordinates).

    Raises:
        InputProblem: with code `missing_file`, `empty_file`, `not_an_image`, `too_large`, `too_small`,
            `bad_aspect_ratio` or `corrupt_image`.
    """
    name = name or str(path)
    try:
        with open_image(Path(path), name, limits) as image:
            original_mode = image.mode
            if exif_transpose:
                image = ImageOps.exif_transpose(image)
            try:
                rgb = to_rgb(image)
            except (OSError, ValueError) as error:
                raise InputProblem(
                    name, "corrupt_image", f"cannot convert {original_mode} image to RGB: {error}"
                ) from None
            if rgb is image:
                rgb = image.copy()
    except ImageInputError as error:
        raise InputProblem(error.name, error.code, error.message) from None
    return LoadedImage(rgb, original_mode)


def check_size(width: int, height: int, limits: ImageLimits, name: str) -> None:
    """Raises an `InputProblem` when a `width` x `height` image is outside `limits`."""
    try:
        check_image_size(width, height, name, limits)
    except ImageInputError as error:
        raise InputProblem(error.name, error.code, error.message) from None


def order_corners(points) -> np.ndarray:
    """The four corners of a quadrilateral as (top-left, top-right, bottom-right, bottom-left), whatever order
    they were annotated in, so that a warp comes out upright."""
    points = np.asarray(points, dtype=np.float32).reshape(4, 2)
    center = points.mean(axis=0)
    angles = np.arctan2(points[:, 1] - center[1], points[:, 0] - center[0])
    # Image y points down, so increasing angle runs clockwise on screen: start at the top-left corner.
    ordered = points[np.argsort(angles)]
    start = int(np.argmin(ordered.sum(axis=1)))
    return np.roll(ordered, -start, axis=0)


def crop_quad(image: Image.Image, corners, name: str, min_side: int = 4, tolerance: float = 2.0) -> Image.Image:
    """Cuts the quadrilateral `corners` out of `image` with a perspective warp into an upright rectangle whose
    sides are the quadrilateral's longer opposite sides.

    Raises:
        InputProblem: `bad_corners` when a corner lies outside the image or the plate would be under `min_side`
            pixels high or wide.
    """
    quad = order_corners(corners)
    width, height = image.size
    if (
        (quad[:, 0] < -tolerance).any()
        or (quad[:, 0] > width - 1 + tolerance).any()
        or ((quad[:, 1] < -tolerance).any() or (quad[:, 1] > height - 1 + tolerance).any())
    ):
        raise InputProblem(
            name, "bad_corners", f"plate corners {quad.tolist()} fall outside the {width}x{height} image"
        )
    top_left, top_right, bottom_right, bottom_left = quad
    out_width = int(round(max(np.linalg.norm(top_right - top_left), np.linalg.norm(bottom_right - bottom_left))))
    out_height = int(round(max(np.linalg.norm(bottom_left - top_left), np.linalg.norm(bottom_right - top_right))))
    if min(out_width, out_height) < min_side:
        raise InputProblem(
            name,
            "bad_corners",
            f"plate corners {quad.tolist()} give a {out_width}x{out_height} crop; "
            f"need at least {min_side} pixels a side",
        )
    target = np.array(
        [[0, 0], [out_width - 1, 0], [out_width - 1, out_height - 1], [0, out_height - 1]], dtype=np.float32
    )
    matrix = cv2.getPerspectiveTransform(quad, target)
    warped = cv2.warpPerspective(
        np.asarray(image), matrix, (out_width, out_height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return Image.fromarray(warped)


def encode_png(image: Image.Image | np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB image (PIL or HxWx3 uint8 array). Compression level 1: plate crops are small,
    and higher levels cost more encoding time than they save in bytes."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(array, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV fails only on empty arrays, which never reach here
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


def decode_image(data: bytes) -> Image.Image:
    """The RGB image encoded in `data` (for tests and previews)."""
    return to_rgb(Image.open(io.BytesIO(data)))


__all__ = [
    "CROP_LIMITS",
    "IMAGE_EXTENSIONS",
    "ImageLimits",
    "LoadedImage",
    "SCENE_LIMITS",
    "check_size",
    "crop_quad",
    "decode_image",
    "describe",
    "encode_png",
    "load_image",
    "order_corners",
]
