"""`synthetic`: rendered plates of several regions, degraded at controlled severities, as single crops or as
MDLP-like groups of independently degraded frames.

Sample `i` is a pure function of `(seed, i)`: its random generator is seeded from both, so a build gives the same
dataset whatever the number of workers or the order they finish in.
"""

import logging
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..images import encode_png
from ..pipeline import BuildOptions, BuildResult, Task, run_build
from ..regions import ALNUM, GENERIC_REGION, LAYOUTS, REGIONS
from ..schema import Sample
from .degrade import DEGRADATION_TYPES, NONE, SEVERITIES, compound_parts, degrade, severity_params
from .fonts import FontSet, find_fonts
from .render import add_surroundings, render_plate
from .styles import DEFAULT_LAYOUTS, STYLES

logger = logging.getLogger(__name__)

SOURCE = "synthetic"


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate.

    Args:
        num: Number of samples (plates).
        regions: Region codes to draw layouts from (each region's default layouts, equally likely).
        layouts: Explicit layout names; overrides `regions`.
        frames: Images per sample: 1 for single crops, N > 1 for MDLP-like samples of N frames of one plate,
            each degraded independently (same type and severity, different random draws and a small shift).
        degradations: Degradation types to draw from (see `degrade.DEGRADATION_TYPES`).
        severities: Severity levels to draw from (1-5).
        clean_fraction: Share of samples left undegraded (`degradation="none"`, severity 0).
        free_text_fraction: Share of one-row plates whose text ignores the layout's pattern: 5 to 8 characters drawn
            uniformly from the letters and digits (after the province character on Chinese layouts), printed in the
            layout's style. Real plates include vanity, old and foreign formats; a reader trained on layout patterns
            alone learns the pattern instead of the glyphs (it turns the 6-character US plate K17965 into the
            7-character LLLNNNN it expects).
        height: Height in pixels of a one-row plate before degradation (x0.9-1.1).
    """

    num: int = 1000
    regions: tuple[str, ...] = tuple(DEFAULT_LAYOUTS)
    layouts: tuple[str, ...] | None = None
    frames: int = 1
    degradations: tuple[str, ...] = DEGRADATION_TYPES
    severities: tuple[int, ...] = SEVERITIES
    clean_fraction: float = 0.1
    free_text_fraction: float = 0.0
    height: int = 56

    def resolved_layouts(self) -> tuple[str, ...]:
        """The layouts to draw from.

        Raises:
            ValueError: for an unknown region, layout, degradation or severity, or a bad count.
        """
        if self.num < 0:
            raise ValueError(f"num must be >= 0, got {self.num}.")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}.")
        if not 0.0 <= self.clean_fraction <= 1.0:
            raise ValueError(f"clean_fraction must be in [0, 1], got {self.clean_fraction}.")
        if not 0.0 <= self.free_text_fraction <= 1.0:
            raise ValueError(f"free_text_fraction must be in [0, 1], got {self.free_text_fraction}.")
        unknown = [kind for kind in self.degradations if kind not in DEGRADATION_TYPES]
        if unknown or not self.degradations:
            raise ValueError(f"Unknown degradation(s) {unknown}; choose from {DEGRADATION_TYPES}.")
        if not self.severities or any(level not in SEVERITIES for level in self.severities):
            raise ValueError(f"Severities must be among {SEVERITIES}, got {self.severities}.")
        if self.layouts:
            missing = [name for name in self.layouts if name not in STYLES]
            if missing:
                raise ValueError(f"No synthetic style for layout(s) {missing}; available: {sorted(STYLES)}.")
            return tuple(self.layouts)
        missing = [code for code in self.regions if code not in DEFAULT_LAYOUTS]
        if missing or not self.regions:
            raise ValueError(f"Cannot synthesise region(s) {missing}; available: {sorted(DEFAULT_LAYOUTS)}.")
        return tuple(name for code in self.regions for name in DEFAULT_LAYOUTS[code])


def _shifted(image: np.ndarray, rng: np.random.Generator, max_shift: float = 2.0) -> np.ndarray:
    """`image` moved by up to `max_shift` pixels, as consecutive video frames of a plate are."""
    dx, dy = rng.uniform(-max_shift, max_shift, size=2)
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def _free_text(layout, rng: np.random.Generator) -> str:
    """5 to 8 letters and digits with no pattern; a layout whose first position holds no letter or digit (the
    Chinese province) keeps that first character, since a plate of that region always starts with one."""
    prefix = ""
    if not any(char in ALNUM for char in layout.positions[0]):
        prefix = layout.positions[0][rng.integers(len(layout.positions[0]))]
    length = int(rng.integers(5, 9)) - len(prefix)
    return prefix + "".join(ALNUM[index] for index in rng.integers(len(ALNUM), size=length))


class SyntheticSampleMaker:
    """Makes sample `i` of a synthetic build. Picklable, for worker processes."""

    def __init__(self, config: SyntheticConfig, fonts: FontSet, seed: int):
        self.config = config
        self.layouts = config.resolved_layouts()
        self.fonts = fonts
        self.seed = seed

    def __call__(self, task: Task) -> Sample:
        return self.make(task.payload)

    def _draw_plate(self, index: int) -> tuple[np.random.Generator, str, str]:
        """The random stream of sample `index`, after drawing its layout name and plate text from it."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
        layout_name = self.layouts[rng.integers(len(self.layouts))]
        layout = LAYOUTS[layout_name]
        # Drawn only when asked for, so builds without free texts stay identical to those made before the option.
        if self.config.free_text_fraction and len(layout.rows) == 1 and rng.random() < self.config.free_text_fraction:
            return rng, layout_name, _free_text(layout, rng)
        return rng, layout_name, layout.sample(rng)

    def plate_text(self, index: int) -> str:
        """The plate text sample `index` will read, without rendering it."""
        return self._draw_plate(index)[2]

    def make(self, index: int) -> Sample:
        config = self.config
        rng, layout_name, text = self._draw_plate(index)
        layout = LAYOUTS[layout_name]
        plate = add_surroundings(
            render_plate(text, layout_name, STYLES[layout_name], self.fonts, rng, config.height), rng
        )

        if rng.random() < config.clean_fraction:
            kind, severity, kinds = NONE, 0, ()
        else:
            kind = config.degradations[rng.integers(len(config.degradations))]
            severity = int(config.severities[rng.integers(len(config.severities))])
            kinds = compound_parts(rng) if kind == "compound" else (kind,)

        images, frame_seeds = [], []
        for _ in range(config.frames):
            frame = _shifted(plate, rng) if config.frames > 1 else plate
            frame_seed = int(rng.integers(2**31 - 1))
            frame_seeds.append(frame_seed)
            images.append(encode_png(degrade(frame, kinds, severity, frame_seed)))
        free_text = not layout.matches(text)
        region = layout.region
        if free_text and REGIONS[region].validate(text) is not None:
            region = GENERIC_REGION.code
        params = {
            "layout": layout_name,
            "free_text": free_text,
            "types": list(kinds),
            "severity": severity,
            "strength": {name: severity_params(name, severity) for name in kinds},
            "frame_seeds": frame_seeds,
        }
        return Sample(
            id=f"synthetic-{index:07d}",
            images=images,
            text=text,
            region=region,
            source=SOURCE,
            subset=layout_name,
            degradation=kind,
            severity=severity,
            degradation_params=params,
        )


def synthetic_tasks(maker: SyntheticSampleMaker, num: int) -> list[Task]:
    """One task per sample, grouped by plate text: two draws of one plate share a split, as real crops do."""
    return [
        Task(id=f"synthetic-{index:07d}", name=f"synthetic-{index:07d}", group=maker.plate_text(index), payload=index)
        for index in range(num)
    ]


def build_synthetic(
    output_dir,
    config: SyntheticConfig | None = None,
    options: BuildOptions | None = None,
    fonts: FontSet | None = None,
) -> BuildResult:
    """Generates `config.num` degraded synthetic plates into a dataset at `output_dir`.

    Args:
        output_dir: The dataset folder to create.
        config: What to generate.
        options: Common build options (`seed` seeds every sample; `num_workers` processes share the work).
        fonts: Fonts to render with (found with `find_fonts` when None).

    Raises:
        FontNotFoundError: when a needed font is not installed (the message says how to install it).
    """
    config = config or SyntheticConfig()
    options = options or BuildOptions(num_workers=2)
    layouts = config.resolved_layouts()
    fonts = fonts or find_fonts(need_cjk=any(LAYOUTS[name].region == "CN" for name in layouts))
    maker = SyntheticSampleMaker(config, fonts, options.seed)
    summary = {"synthetic_config": {**asdict(config), "layouts": list(layouts)}, "fonts": asdict(fonts)}
    return run_build(SOURCE, synthetic_tasks(maker, config.num), maker, output_dir, options, extra_summary=summary)


__all__ = ["SyntheticConfig", "SyntheticSampleMaker", "build_synthetic", "synthetic_tasks"]
