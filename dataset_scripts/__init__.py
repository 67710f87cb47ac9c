"""LP-LLM dataset builders: every plate source turned into one conversational `datasets.DatasetDict`.

Command line: `python -m dataset_scripts.build --source {ccpd,rodosol,mdlp,crops,synthetic} ...`. Python API: one
builder per source, each returning a `BuildResult` whose `dataset` is the saved `DatasetDict`:

    from dataset_scripts import BuildOptions, SyntheticConfig, build_crops, build_synthetic

    build_crops("../shared/realdata", "data/realdata_eval", options=BuildOptions(seed=0))
    build_synthetic("data/synthetic", SyntheticConfig(num=20_000), BuildOptions(num_workers=2))
"""

from .ccpd import build_ccpd, encode_ccpd_name, parse_ccpd_name
from .crops import build_crops
from .mdlp import build_mdlp
from .pipeline import BuildOptions, BuildResult
from .regions import GENERIC_REGION, LAYOUTS, REGIONS, PlateLayout, Region, get_region, normalize_plate_text
from .output import OutputExistsError
from .reports import InputProblem, NoSamplesError, StrictModeError
from .rodosol import build_rodosol
from .schema import FEATURES, Sample, conversation
from .synthetic.generate import SyntheticConfig, build_synthetic

__all__ = [
    "BuildOptions",
    "BuildResult",
    "FEATURES",
    "GENERIC_REGION",
    "InputProblem",
    "LAYOUTS",
    "NoSamplesError",
    "OutputExistsError",
    "PlateLayout",
    "REGIONS",
    "Region",
    "Sample",
    "StrictModeError",
    "SyntheticConfig",
    "build_ccpd",
    "build_crops",
    "build_mdlp",
    "build_rodosol",
    "build_synthetic",
    "conversation",
    "encode_ccpd_name",
    "get_region",
    "normalize_plate_text",
    "parse_ccpd_name",
]
