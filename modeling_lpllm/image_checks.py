"""The one gate every image input passes: the pipeline, the processor, the dataset builder and the evaluation data.

- Files: the size is read from the header and checked against `ImageLimits` before any pixel is decoded, so a
  144-megapixel PNG of 140 KB is refused without allocating it; Pillow's decompression-bomb error and warning become
  an `ImageInputError` naming the file.
- Every image: each side at least `min_side` pixels (a 1x1 image holds no plate to read), at most `max_pixels`
  pixels, the longer side at most `max_aspect` times the shorter.
- Arrays: `uint8` values are pixels (0-255); floating-point values are fractions of full intensity in [0, 1] and are
  scaled to pixels once, here; any other dtype, a value outside [0, 1] or a NaN is refused. Layouts are
  `(height, width)`, `(height, width, 1, 3 or 4)` or, for the processor's pre-made arrays, channels first.

Every refusal is an `ImageInputError` (a `ValueError`) naming the input (the file, or "image #i" for an in-memory
image) and what was expected.
"""

import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class ImageLimits:
    """Sizes an input image must have to be believable.

    Args:
        min_side: Smallest width or height, in pixels.
        max_pixels: Largest width x height; checked from a file's header, before decoding.
        max_aspect: Largest ratio of the longer to the shorter side.
    """

    min_side: int = 8
    max_pixels: int = 40_000_000
    max_aspect: float = 25.0


# A plate is at most ~5:1; 25:1 leaves a wide margin for loose crops and still refuses a strip of noise.
PLATE_IMAGE_LIMITS = ImageLimits()

ACCEPTED_ARRAYS = "uint8 pixels (0-255) or floating-point fractions in [0, 1]"


class ImageInputError(ValueError):
    """An image input that cannot be read as a plate image.

    Args:
        name: The input as the user knows it: the file, or "image #i" for an in-memory image.
        code: A short machine-readable reason: `missing_file`, `empty_file`, `not_an_image`, `too_large`,
            `too_small`, `bad_aspect_ratio`, `corrupt_image`, `bad_array` or `bad_type`.
        message: What is wrong and what was expected.
    """

    def __init__(self, name: str, code: str, message: str):
        self.name = str(name)
        self.code = code
        self.message = message
        super().__init__(f"{self.name}: {message}")

    def __reduce__(self):
        # Worker processes send errors back by pickling; the default would call __init__ with one argument.
        return (type(self), (self.name, self.code, self.message))


def check_image_size(width: int, height: int, name: str, limits: ImageLimits = PLATE_IMAGE_LIMITS) -> None:
    """Raises an `ImageInputError` naming `name` when a `width` x `height` image is outside `limits`."""
    if width * height > limits.max_pixels:
        raise ImageInputError(
            name, "too_large", f"image is {width}x{height} = {width * height} pixels; at most {limits.max_pixels} accepted"
        )
    if min(width, height) < limits.min_side:
        raise ImageInputError(
            name, "too_small", f"image is {width}x{height}; each side must be at least {limits.min_side} pixels"
        )
    if max(width, height) / min(width, height) > limits.max_aspect:
        raise ImageInputError(
            name,
            "bad_aspect_ratio",
            f"image is {width}x{height} (aspect {max(width, height) / min(width, height):.0f}:1); "
            f"at most {limits.max_aspect:g}:1 accepted",
        )


def open_image(source, name: str | None = None, limits: ImageLimits = PLATE_IMAGE_LIMITS) -> Image.Image:
    """Opens an image file (a path, encoded bytes or a binary file object), checks its header's size against
    `limits`, then decodes it. The image keeps its own mode (see `to_rgb`).

    Raises:
        ImageInputError: with code `missing_file`, `empty_file`, `not_an_image`, `too_large`, `too_small`,
            `bad_aspect_ratio` or `corrupt_image`, naming `name` (default: the path, or "image bytes").
    """
    if isinstance(source, (str, os.PathLike)):
        name = name or os.fspath(source)
        if not os.path.isfile(source):
            raise ImageInputError(name, "missing_file", f"no such file: {os.fspath(source)}")
        if os.path.getsize(source) == 0:
            raise ImageInputError(name, "empty_file", "file is empty (0 bytes); expected an image")
    elif isinstance(source, (bytes, bytearray)):
        name = name or "image bytes"
        if not source:
            raise ImageInputError(name, "empty_file", "no bytes; expected an encoded image")
        source = io.BytesIO(source)
    name = name or "image file"
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; a bomb is an error here either way.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(source)
        except UnidentifiedImageError:
            raise ImageInputError(
                name, "not_an_image", "cannot identify image file; expected a JPEG, PNG, BMP, WebP, TIFF or GIF image"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageInputError(name, "too_large", f"refused as a possible decompression bomb ({error})") from None
        except OSError as error:
            raise ImageInputError(name, "corrupt_image", f"cannot open image: {error}") from None
        try:
            check_image_size(image.width, image.height, name, limits)
            image.load()
        except ImageInputError:
            image.close()
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            image.close()
            raise ImageInputError(name, "too_large", f"refused as a possible decompression bomb ({error})") from None
        except (OSError, SyntaxError, ValueError) as error:
            image.close()
            raise ImageInputError(
                name, "corrupt_image", f"cannot decode image ({error}); the file is truncated or damaged"
            ) from None
    return image


def pixel_array(
    array: np.ndarray, name: str, limits: ImageLimits = PLATE_IMAGE_LIMITS, channels_first: bool = False
) -> np.ndarray:
    """`array` as uint8 pixels of the same shape: uint8 as it is, floating-point fractions in [0, 1] times 255
    (rounded), the sides checked against `limits`. Channels last or, with `channels_first` (the processor's
    prepared arrays) and three dimensions whose last is not 1, 3 or 4, channels first.

    Raises:
        ImageInputError: `bad_array` for another dtype, values outside [0, 1] or a shape that is not an image;
            `too_small` / `too_large` / `bad_aspect_ratio` for its sides.
    """
    array = np.asarray(array)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4)):
        height, width = array.shape[:2]
    elif channels_first and array.ndim == 3 and array.shape[0] in (1, 3, 4):
        height, width = array.shape[1:]
    else:
        raise ImageInputError(
            name,
            "bad_array",
            f"array of shape {array.shape} is not an image; expected (height, width) or (height, width, 1, 3 or 4 "
            "channels)",
        )
    check_image_size(width, height, name, limits)
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ImageInputError(name, "bad_array", f"array has dtype {array.dtype}; expected {ACCEPTED_ARRAYS}")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if not (0.0 <= low and high <= 1.0):  # also false for NaN
        raise ImageInputError(
            name,
            "bad_array",
            f"float array has values in [{low:g}, {high:g}]; expected fractions in [0, 1] (or uint8 pixels 0-255)",
        )
    return np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Returns an 8-bit RGB copy of a PIL image of any mode: transparency over white, 16-bit and float gray
    rescaled to 8 bits, CMYK/palette/L converted.

    Raises:
        ValueError: for an image with a zero-sized side.
    """
    if image.width == 0 or image.height == 0:
        raise ValueError(f"Image has an empty side: {image.width}x{image.height}.")
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        wide = image.convert("F")
        low, high = wide.getextrema()
        scale = 0.0 if high == low else 255.0 / (high - low)
        return wide.point(lambda value: (value - low) * scale).convert("L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image_input(image, name: str | None = None, limits: ImageLimits = PLATE_IMAGE_LIMITS) -> Image.Image:
    """A file path, encoded bytes, a PIL image or a numpy array (see `pixel_array`), checked, as an 8-bit RGB PIL
    image.

    Raises:
        ImageInputError: naming `name` and, for a file, its path (default: "image") and what was expected.
    """
    if isinstance(image, (str, os.PathLike)):
        # A file is named by its path, after its place in the call when there is one.
        name = f"{name} ({os.fspath(image)})" if name else os.fspath(image)
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        with open_image(image, name, limits) as opened:
            return _rgb_copy(opened, name)
    name = name or "image"
    if isinstance(image, Image.Image):
        check_image_size(image.width, image.height, name, limits)
        return _rgb_copy(image, name)
    if isinstance(image, np.ndarray):
        array = pixel_array(image, name, limits)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        return to_rgb(Image.fromarray(array))
    raise ImageInputError(
        name, "bad_type", f"got a {type(image).__name__}; expected a file path, a PIL.Image.Image or a numpy array"
    )


def _rgb_copy(image: Image.Image, name: str | None) -> Image.Image:
    """`to_rgb(image)` detached from any open file, its conversion errors named."""
    try:
        rgb = to_rgb(image)
    except (OSError, ValueError) as error:
        raise ImageInputError(name or "image", "corrupt_image", f"cannot convert {image.mode} image to RGB: {error}") from None
    return rgb.copy() if rgb is image else rgb


__all__ = [
    "ACCEPTED_ARRAYS",
    "ImageInputError",
    "ImageLimits",
    "PLATE_IMAGE_LIMITS",
    "check_image_size",
    "load_image_input",
    "open_image",
    "pixel_array",
    "to_rgb",
]
