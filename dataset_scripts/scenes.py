"""Plate samples cut out of scene photos by their four annotated corners (CCPD, RodoSol-ALPR)."""

from pathlib import Path

from .images import SCENE_LIMITS, crop_quad, encode_png, load_image
from .pipeline import Task
from .schema import Sample


def scene_crop_sample(task: Task, region: str, source: str) -> Sample:
    """Loads the scene of `task` (payload: path, plate text, corners, subset) and cuts the plate out upright."""
    path, text, corners, subset = task.payload
    loaded = load_image(Path(path), SCENE_LIMITS, name=task.name)
    crop = crop_quad(loaded.image, corners, task.name)
    return Sample(
        id=task.id,
        images=[encode_png(crop)],
        text=text,
        region=region,
        source=source,
        subset=subset,
        original_modes=(loaded.original_mode,),
    )
