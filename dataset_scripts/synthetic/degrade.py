"""Degradations at controlled severities, built from albumentations transforms.

Each degradation type has five severity levels (1 mild ... 5 severe); a level fixes the transform's strength
and leaves only its nuisance variables random (blur direction, noise pattern, which corner is darker), drawn
from the seed the caller gives. Severities are calibrated for plates about 56 pixels high, the renderer's
default. `compound` applies two or three other types at the same level, as real captures combine them.
"""

import os
from functools import cache

import cv2
import numpy as np

# Strength per severity level 1..5 for each degradation type, in the unit named by the key.
# Listed in the order a camera applies them, which is also the order `compound` chains them: geometry, optics,
# light, then the sensor and the encoder.
SEVERITY_TABLE = {
    "perspective": {"scale": (0.03, 0.05, 0.07, 0.09, 0.12), "rotate": (3, 6, 9, 13, 18)},
    "gaussian_blur": {"sigma": (0.6, 1.0, 1.5, 2.1, 2.8)},
    "motion_blur": {"length": (3, 5, 7, 11, 15)},
    "defocus": {"radius": (1, 2, 3, 4, 6)},
    "dark": {"brightness": (-0.15, -0.25, -0.35, -0.45, -0.55)},
    "overexposure": {"brightness": (0.15, 0.25, 0.35, 0.45, 0.55)},
    # Illumination gradients (albumentations caps them at 0.2) plus a cast shadow of growing depth.
    "uneven_illumination": {"intensity": (0.08, 0.12, 0.16, 0.2, 0.2), "shadow": (0.0, 0.15, 0.3, 0.45, 0.6)},
    "color_cast": {"shift": (15, 30, 45, 60, 80)},
    "low_resolution": {"scale": (0.6, 0.45, 0.33, 0.25, 0.18)},
    "noise": {"std": (0.04, 0.08, 0.12, 0.18, 0.26)},
    "jpeg": {"quality": (50, 30, 18, 10, 5)},
}
DEGRADATION_TYPES = tuple(SEVERITY_TABLE) + ("compound",)
SEVERITIES = (1, 2, 3, 4, 5)
NONE = "none"


def severity_params(kind: str, severity: int) -> dict:
    """The fixed strength of `kind` at `severity`, e.g. `{"sigma": 1.5}` for gaussian_blur at 3."""
    if kind not in SEVERITY_TABLE:
        raise ValueError(f"Unknown degradation {kind!r}; expected one of {DEGRADATION_TYPES + (NONE,)}.")
    if severity not in SEVERITIES:
        raise ValueError(f"Severity must be one of {SEVERITIES}, got {severity}.")
    return {name: values[severity - 1] for name, values in SEVERITY_TABLE[kind].items()}


def _transforms(kind: str, severity: int) -> list:
    # Imported here: albumentations takes seconds to import and is only needed by synthetic builds. Its import
    # also checks PyPI for a newer version (a network call, 2 s timeout) unless told not to; a data pipeline
    # on an offline machine must not stall or phone home.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    params = severity_params(kind, severity)
    if kind == "gaussian_blur":
        return [A.GaussianBlur(blur_limit=0, sigma_limit=(params["sigma"], params["sigma"]), p=1)]
    if kind == "motion_blur":
        length = params["length"]
        return [A.MotionBlur(blur_limit=(length, length), angle_range=(0, 360), direction_range=(-0.5, 0.5), p=1)]
    if kind == "defocus":
        return [A.Defocus(radius=(params["radius"], params["radius"]), alias_blur=(0.1, 0.3), p=1)]
    if kind == "low_resolution":
        scale = params["scale"]
        return [
            A.Downscale(
                scale_range=(scale, scale),
                interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                p=1,
            )
        ]
    if kind == "noise":
        return [A.GaussNoise(std_range=(params["std"], params["std"]), per_channel=True, p=1)]
    if kind == "jpeg":
        return [A.ImageCompression(compression_type="jpeg", quality_range=(params["quality"], params["quality"]), p=1)]
    if kind in ("dark", "overexposure"):
        brightness = params["brightness"]
        return [
            A.RandomBrightnessContrast(
                brightness_limit=(brightness, brightness),
                contrast_limit=(-abs(brightness) / 2, -abs(brightness) / 2),
                p=1,
            )
        ]
    if kind == "uneven_illumination":
        intensity, shadow = params["intensity"], params["shadow"]
        transforms = [
            A.OneOf(
                [
                    A.Illumination(mode=mode, intensity_range=(intensity, intensity), effect_type="both", p=1)
                    for mode in ("linear", "corner", "gaussian")
                ],
                p=1,
            )
        ]
        if shadow > 0:
            transforms.append(
                A.RandomShadow(
                    shadow_roi=(0, 0, 1, 1), num_shadows_limit=(1, 1), shadow_intensity_range=(shadow, shadow), p=1
                )
            )
        return transforms
    if kind == "color_cast":
        shift = params["shift"]
        return [
            A.RGBShift(
                r_shift_limit=(-shift, shift), g_shift_limit=(-shift, shift), b_shift_limit=(-shift, shift), p=1
            )
        ]
    if kind == "perspective":
        return [
            A.Affine(
                rotate=(-params["rotate"], params["rotate"]), fit_output=True, border_mode=cv2.BORDER_REPLICATE, p=1
            ),
            A.Perspective(
                scale=(params["scale"], params["scale"]), fit_output=True, border_mode=cv2.BORDER_REPLICATE, p=1
            ),
        ]
    raise ValueError(f"Unknown degradation {kind!r}.")  # pragma: no cover - severity_params already refused it


@cache
def degradation_pipeline(kind: str, severity: int):
    """The albumentations Compose of `kind` at `severity`; built once per process (55 at most), then reseeded
    for every image."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    return A.Compose(_transforms(kind, severity), p=1.0)


def compound_parts(rng: np.random.Generator) -> tuple[str, ...]:
    """Two or three distinct simple types for a `compound` degradation, in camera order (see SEVERITY_TABLE);
    never both `dark` and `overexposure`."""
    excluded = "overexposure" if rng.random() < 0.5 else "dark"
    simple = [kind for kind in SEVERITY_TABLE if kind != excluded]
    count = int(rng.integers(2, 4))
    chosen = set(rng.choice(simple, size=count, replace=False).tolist())
    return tuple(kind for kind in simple if kind in chosen)


def degrade(image: np.ndarray, kinds: tuple[str, ...], severity: int, seed: int) -> np.ndarray:
    """`image` (H x W x 3 uint8 RGB) degraded by each of `kinds` in turn at `severity`, deterministically for
    `seed`."""
    for step, kind in enumerate(kinds):
        pipeline = degradation_pipeline(kind, severity)
        pipeline.set_random_seed(seed + step)
        image = pipeline(image=image)["image"]
    return image


__all__ = ["DEGRADATION_TYPES", "NONE", "SEVERITIES", "SEVERITY_TABLE", "compound_parts", "degrade", "severity_params"]
