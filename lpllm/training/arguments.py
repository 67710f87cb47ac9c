"""LP-LLM's own training arguments (next to TRL's `SFTConfig` and `ModelConfig`: TRL's `ScriptArguments` with several
training sources, and `PlateTrainingArguments`), and the paper's ablations as trainable-parameter sets."""

import math
import os
from dataclasses import dataclass, field

from trl import ScriptArguments

from modeling_lpllm.deskew import check_max_degrees
from modeling_lpllm.plate_reading import DEFAULT_MAX_NEW_TOKENS
from modeling_lpllm.plate_views import check_num_views

from .augmentation import check_max_shift, check_shadow


def check_image_size(image_size) -> list[int] | None:
    """`image_size` as `[height, width]`: `[448]` or `448` -> `[448, 448]` (a square), `[32, 224]` as it is; None
    stays None. A ValueError naming the field otherwise."""
    if image_size is None:
        return None
    sides = [image_size] if isinstance(image_size, int) else image_size
    if (
        isinstance(sides, (str, bytes))
        or not isinstance(sides, (list, tuple))
        or len(sides) not in (1, 2)
        or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in sides)
    ):
        raise ValueError(
            "`image_size` must be one positive integer (a square side, e.g. 448) or two, HEIGHT WIDTH (e.g. 32 224); "
            f"got {image_size!r}."
        )
    return list(sides) * 2 if len(sides) == 1 else list(sides)


@dataclass(frozen=True)
class Ablation:
    """One row of the paper's Table 2: which parameter sets train."""

    name: str
    lora: bool
    cmrm: bool
    description: str

    @property
    def trains(self) -> bool:
        return self.lora or self.cmrm


ABLATIONS = {
    "A": Ablation("A", lora=False, cmrm=False, description="zero-shot Qwen3-VL: nothing trained, CMRM off"),
    "B": Ablation("B", lora=True, cmrm=False, description="LoRA on the language model only, CMRM off"),
    "C": Ablation("C", lora=False, cmrm=True, description="CMRM only, everything else frozen"),
    "D": Ablation("D", lora=True, cmrm=True, description="LoRA on the language model + CMRM (LP-LLM)"),
}

# LoRA goes on the language model's attention and MLP projections only; the vision tower and merger stay frozen.
LANGUAGE_MODEL_LORA_TARGETS = (
    r".*language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
)

MODEL_OVERRIDE_FIELDS = (
    "cmrm_num_slots",
    "cmrm_num_layers",
    "cmrm_num_heads",
    "cmrm_dropout",
    "cmrm_alpha",
    "cmrm_learnable_alpha",
    "cmrm_apply_to_deepstack",
    "cmrm_fuse_frames",
)


def _check_pair(value, name: str, check, expected: str) -> list[float] | None:
    """Two numbers through `check(a, b)`, as a list; None stays None (off); anything else -> a ValueError naming the
    field `name` and what it `expected`."""
    if value is None:
        return None
    try:
        if isinstance(value, (str, bytes)) or len(value) != 2:
            raise ValueError(f"two values expected, got {value!r}")
        return list(check(*value))
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{name}` must be {expected}; got {value!r}.") from error


def check_augment_quad_jitter(value) -> list[float] | None:
    """`[0.05, 0.2]` as `[horizontal, vertical]` floats; None (off) stays None."""
    return _check_pair(
        value,
        "augment_quad_jitter",
        lambda *shifts: check_max_shift(shifts),
        "`H V`, two fractions in [0, 0.5) of the crop's width and height (e.g. 0.05 0.2)",
    )


def check_augment_shadow(value) -> list[float] | None:
    """`[0.3, 0.6]` as `[probability, max_darkening]` floats; None (off) stays None."""
    return _check_pair(
        value,
        "augment_shadow",
        check_shadow,
        "`P DARKENING`, a probability in [0, 1] and a largest darkening in (0, 1) (e.g. 0.3 0.6)",
    )


def check_weights(weights, num_sources: int) -> list[float] | None:
    """`weights` as floats, after checking there is one finite number >= 0 per source and their sum is positive;
    None (concatenation) stays None.

    Raises:
        ValueError: naming `dataset_weights` and what was expected.
    """
    if weights is None:
        return None
    weights = list(weights)
    if len(weights) != num_sources:
        raise ValueError(
            f"`dataset_weights` has {len(weights)} value(s) for {num_sources} `dataset_name` source(s): give one "
            f"weight per source, in the same order (got {weights!r})."
        )
    if not all(
        isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight) and weight >= 0
        for weight in weights
    ) or sum(weights) <= 0:
        raise ValueError(
            f"`dataset_weights` must be finite numbers >= 0 with a positive sum (relative shares of the training "
            f"mixture, e.g. `0.6 0.3 0.1`); got {weights!r}."
        )
    return [float(weight) for weight in weights]


@dataclass
class PlateScriptArguments(ScriptArguments):
    """TRL's `ScriptArguments`, with `dataset_name` a list of training sources mixed by `dataset_weights`
    (`lpllm.training.mixture` says how an epoch draws on them)."""

    dataset_name: list[str] | None = field(
        default=None,
        metadata={"help": "Training source(s), space separated (in a recipe, a list): a folder written by `lpllm data` "
        "(save_to_disk), a Hub dataset id, a crops folder (holding labels.csv/labels.jsonl, or sub-folders that do) or "
        "a label file (.csv/.jsonl), the last two built into a cached dataset on first use (`dataset_cache_dir`). "
        "Several sources train together; their validation splits are read together during training, and each one's "
        "`final_eval_split` into its own report, `final_eval/<name>_<split>/`."},
    )
    dataset_weights: list[float] | None = field(
        default=None,
        metadata={"help": "Relative shares of the training mixture, one per `dataset_name` source, e.g. `0.6 0.3 0.1`. "
        "An epoch has as many rows as the sources' training splits together; each source gives its share of them, "
        "a smaller source repeated, a larger one subsampled, drawn anew every epoch from `seed`. Default: the "
        "sources concatenated, each row once per epoch (shares proportional to their sizes)."},
    )
    dataset_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where crops folders and label files given as `dataset_name` are built into datasets, "
        "once, keyed by their path, label files and folder listings. Default: `lpllm_crops` in the datasets cache "
        "(`HF_DATASETS_CACHE`)."},
    )

    def __post_init__(self):
        if isinstance(self.dataset_name, str):  # a recipe's `dataset_name: DIR`
            self.dataset_name = [self.dataset_name]
        if self.dataset_name is not None and len(set(self.dataset_name)) != len(self.dataset_name):
            raise ValueError(f"`dataset_name` names a source twice ({self.dataset_name}); weight it instead.")
        if self.dataset_weights is not None:
            if not self.dataset_name:
                raise ValueError("`dataset_weights` needs the `dataset_name` sources it weights.")
            self.dataset_weights = check_weights(self.dataset_weights, len(self.dataset_name))


@dataclass
class PlateTrainingArguments:
    """Arguments of `train_sft.py` beyond TRL's: ablations, images, CMRM, evaluation with generation."""

    ablation: str | None = field(
        default=None,
        metadata={
            "help": "The paper's Table 2 row: A (zero-shot, trains nothing), B (LoRA only), C (CMRM only), "
            "D (LoRA + CMRM). Sets the trainable parameters; needs a pretrained model, not a from-scratch config."
        },
    )
    dataset_eval_split: str = field(
        default="validation", metadata={"help": "Split evaluated during training (loss and generation metrics)."}
    )
    image_size: list[int] | None = field(
        default=None,
        metadata={"help": "Resize every image to this size, in training and (saved with the processor) at inference: "
        "one side for a square (`448`, the paper) or `HEIGHT WIDTH` (`32 224`, a plate strip; in a recipe, "
        "`[32, 224]`). Default: keep the aspect ratio within the processor's plate pixel budget."},
    )
    deskew_max_degrees: float | None = field(
        default=None,
        metadata={"help": "Beyond the paper: level crops tilted by up to this many degrees before resizing, in "
        "training and (saved with the processor) at inference; 0: off. Default: the checkpoint's processor setting "
        "(off from scratch)."},
    )
    rectify_plate: bool | None = field(
        default=None,
        metadata={"help": "Beyond the paper: trim every crop to the plate and undo its keystone (top and bottom edges "
        "stretched onto the crop's) before resizing, after any levelling, in training and (saved with the processor) "
        "at inference. Default: the checkpoint's processor setting (off from scratch)."},
    )
    num_views: int | None = field(
        default=None,
        metadata={"help": "Beyond the paper: read each plate from this many views of its crop (the crop and fixed "
        "corner jitters of it, next-token log-probabilities averaged) at the evaluations and (saved with the "
        "processor) at inference; 1: the crop alone. Default: the checkpoint's processor setting (1 from scratch)."},
    )
    min_pixels: int | None = field(default=None, metadata={"help": "Override the processor's pixel budget floor."})
    max_pixels: int | None = field(default=None, metadata={"help": "Override the processor's pixel budget cap."})
    charset: str | None = field(
        default=None,
        metadata={"help": "Characters of the offline tokenizer when training from scratch (default: digits, "
        "Latin capitals and the Chinese plate characters)."},
    )
    cmrm_num_slots: int | None = field(default=None, metadata={"help": "Override: CMRM slot queries K."})
    cmrm_num_layers: int | None = field(default=None, metadata={"help": "Override: CMRM layers L."})
    cmrm_num_heads: int | None = field(default=None, metadata={"help": "Override: CMRM attention heads."})
    cmrm_dropout: float | None = field(default=None, metadata={"help": "Override: CMRM attention dropout."})
    cmrm_alpha: float | None = field(default=None, metadata={"help": "Override: CMRM context scale alpha."})
    cmrm_learnable_alpha: bool | None = field(default=None, metadata={"help": "Override: train alpha."})
    cmrm_apply_to_deepstack: bool | None = field(
        default=None, metadata={"help": "Override: also add the character context to DeepStack features."}
    )
    cmrm_fuse_frames: bool | None = field(
        default=None,
        metadata={"help": "Override, beyond the paper: the frames of a track (the images of one training row, one "
        "prompt) share one CMRM character context, pooled over all their visual tokens."},
    )
    vision_weights: str | None = field(
        default=None,
        metadata={"help": "Beyond the paper: a .safetensors file of PP-OCR recognizer weights (`lpllm convert-ppocr`) "
        "the vision encoder starts from, for a from-scratch config with `vision_encoder: ppocr` "
        "(recipes/models/lpllm_ppocr.json). Default: random weights."},
    )
    freeze_vision_encoder: bool = field(
        default=False,
        metadata={"help": "Beyond the paper: keep the PP-OCR encoder (backbone and neck, and the CTC head of "
        "`ppocr_ctc_features`) as `vision_weights` gave it; its merger into the language model, CMRM and the language "
        "model train. Its backward pass is skipped (for 48 plates ~0.7 s instead of ~2.5 s on one CPU thread), and "
        "the pretrained features stay as they are."},
    )
    ppocr_ctc_features: bool = field(
        default=False,
        metadata={"help": "Beyond the paper: keep the pretrained CTC head of `vision_weights` too, and give the "
        "merger, beside the encoder's features, the head's log-probabilities at each position of the blank and of "
        "every `charset` character PP-OCR's dictionary has (the model config's `ppocr_ctc_classes`): what PP-OCR "
        "itself reads there. For a from-scratch config started from `vision_weights`."},
    )
    generation_eval_samples: int = field(
        default=256, metadata={"help": "Validation samples read with generation at each evaluation (0 = none)."}
    )
    generation_batch_size: int = field(default=32, metadata={"help": "Batch size of greedy generation."})
    calibrate_scores: bool = field(
        default=True,
        metadata={"help": "Beyond the paper: after training, fit the saved model's score temperature, score map and "
        "abstain threshold (the lowest score at which 99.5%% of accepted plates were right) on the "
        "`dataset_eval_split` plates, and save them in its processor (score_calibration.json has the fit), before "
        "the final evaluation."},
    )
    calibration_samples: int = field(
        default=500, metadata={"help": "Validation plates of each training source read to calibrate the scores."}
    )
    max_new_tokens: int = field(
        default=DEFAULT_MAX_NEW_TOKENS,
        metadata={"help": "Generation length cap, saved with the model's generation config: every reader's default."},
    )
    generation_num_beams: int | None = field(
        default=None,
        metadata={"help": "Readings searched per plate (beam search above 1), saved with the model's generation "
        "config: every reader's default. The reading is the best beam that fits a region's plate pattern, so a "
        "letter's place is not read as a digit (e.g. O, not 0). None: the starting model's (1 for a new one)."},
    )
    bf16_if_native: bool = field(
        default=False,
        metadata={"help": "Beyond TRL: choose `bf16` by the hardware, bfloat16 autocast where the matrix products "
        "run in bfloat16 natively (a CUDA GPU from Ampere on, a CPU with AVX512-BF16 or AMX) and float32 elsewhere, "
        "where emulated bfloat16 is many times slower. Overrides `bf16`; to force bfloat16, set this false."},
    )
    max_train_minutes: float | None = field(
        default=None, metadata={"help": "Stop training after this many minutes of training (then evaluate and save); "
        "the evaluations along the way do not count."}
    )
    cosine_over_budget: bool = field(
        default=False,
        metadata={"help": "With `max_train_minutes` and the cosine schedule: decay the learning rate to zero over the "
        "wall-clock budget instead of `max_steps`, so the schedule ends with the budget on any machine."},
    )
    muon: bool = field(
        default=False,
        metadata={"help": "Beyond the paper: Muon (orthogonalised momentum, as `torch.optim.Muon`) on the weight "
        "matrices of the linear layers, AdamW (`optim`'s: `adamw_torch` or `adamw_torch_fused`) on embeddings, output "
        "head, norms, biases and the rest; one learning rate and schedule, Muon's update scaled to AdamW's size."},
    )
    muon_newton_schulz_steps: int = field(
        default=5,
        metadata={"help": "With `muon`: iterations of its orthogonalisation (5: `torch.optim.Muon`'s). Fewer make a "
        "step cheaper where the model is small and the batch too (a CPU), and orthogonalise less exactly."},
    )
    preload_images: bool = field(
        default=False,
        metadata={"help": "Decode every training image once (and, unjittered, resize it to `image_size`), into memory, "
        "before training starts, instead of at every step. Faster steps on CPU; costs ~3 bytes per pixel kept."},
    )
    augment_quad_jitter: list[float] | None = field(
        default=None,
        metadata={"help": "Beyond the paper: `H V` (e.g. `0.05 0.2`; in a recipe, `[0.05, 0.2]`): every time a "
        "training plate is read, move each corner of its crop by up to H of its width and V of its height and "
        "resample (`RandomQuadJitter`). Needs `preload_images`. Default: off."},
    )
    augment_shadow: list[float] | None = field(
        default=None,
        metadata={"help": "Beyond the paper: `P DARKENING` (e.g. `0.3 0.6`; in a recipe, `[0.3, 0.6]`): with "
        "probability P, a random polygon of a training plate is darkened by up to DARKENING (a cast shadow, "
        "`RandomShadow`). Needs `preload_images`. Default: off."},
    )
    augment_warmup_epochs: int = field(
        default=0,
        metadata={"help": "Beyond the paper: the augmentations (`augment_quad_jitter`, `augment_shadow`) start at "
        "zero strength in the first epoch and reach full strength at this epoch, so a model trained from scratch "
        "leaves its initial loss plateau on plain crops first (`AugmentationWarmupCallback`). 0: full strength from "
        "the start."},
    )
    final_eval_split: str | None = field(
        default="test", metadata={"help": "Split evaluated once after training (None to skip)."}
    )
    realdata_dir: str | None = field(
        default=None,
        metadata={"help": "A folder of real crop sets (e.g. ../shared/realdata) read after training, when present."},
    )
    model_card_template: str = field(
        default="model_card.md", metadata={"help": "Template of the model card written beside the final model."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace the earlier run in `output_dir` (its checkpoints, final model, final evaluations "
        "and trainer state) instead of refusing to start. Only a folder a run of ours wrote is replaced; to continue "
        "the earlier run instead, use `resume_from_checkpoint`."},
    )

    def __post_init__(self):
        if self.ablation is not None:
            self.ablation = self.ablation.upper()
            if self.ablation not in ABLATIONS:
                raise ValueError(f"`ablation` must be one of {', '.join(ABLATIONS)}; got {self.ablation!r}.")
        self.image_size = check_image_size(self.image_size)
        if self.vision_weights is not None and not os.path.isfile(self.vision_weights):
            raise ValueError(
                f"`vision_weights` {self.vision_weights}: no such file; write it with `lpllm convert-ppocr "
                "--output_path FILE.safetensors`."
            )
        if self.ppocr_ctc_features and self.vision_weights is None:
            raise ValueError(
                "`ppocr_ctc_features` keeps the CTC head of the PP-OCR recognizer in `vision_weights`; set "
                "`vision_weights`."
            )
        if self.deskew_max_degrees is not None:
            self.deskew_max_degrees = check_max_degrees(self.deskew_max_degrees)
        if self.num_views is not None:
            self.num_views = check_num_views(self.num_views)
        for name in ("min_pixels", "max_pixels", "generation_batch_size", "max_new_tokens", "generation_num_beams"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(
                f"`min_pixels` ({self.min_pixels}) must not exceed `max_pixels` ({self.max_pixels}): they bound the "
                "pixel budget of a resized crop."
            )
        if isinstance(self.generation_eval_samples, bool) or not (
            isinstance(self.generation_eval_samples, int) and self.generation_eval_samples >= 0
        ):
            raise ValueError(
                f"`generation_eval_samples` must be an integer >= 0, got {self.generation_eval_samples!r}."
            )
        if self.max_train_minutes is not None and not (0 < self.max_train_minutes < math.inf):
            raise ValueError(f"`max_train_minutes` must be a positive finite number, got {self.max_train_minutes}.")
        if self.cosine_over_budget and self.max_train_minutes is None:
            raise ValueError("`cosine_over_budget` needs `max_train_minutes`: the budget the cosine spans.")
        if isinstance(self.muon_newton_schulz_steps, bool) or not (
            isinstance(self.muon_newton_schulz_steps, int) and self.muon_newton_schulz_steps >= 1
        ):
            raise ValueError(
                f"`muon_newton_schulz_steps` must be an integer >= 1, got {self.muon_newton_schulz_steps!r}."
            )
        self.augment_quad_jitter = check_augment_quad_jitter(self.augment_quad_jitter)
        if self.augment_quad_jitter is not None and not self.preload_images:
            raise ValueError("`augment_quad_jitter` needs `preload_images: true` (it jitters the decoded crops).")
        self.augment_shadow = check_augment_shadow(self.augment_shadow)
        if self.augment_shadow is not None and not self.preload_images:
            raise ValueError("`augment_shadow` needs `preload_images: true` (it shades the decoded crops).")
        if isinstance(self.augment_warmup_epochs, bool) or self.augment_warmup_epochs < 0:
            raise ValueError(f"`augment_warmup_epochs` must be an integer >= 0, got {self.augment_warmup_epochs!r}.")
        if self.augment_warmup_epochs and not self.augments:
            raise ValueError(
                "`augment_warmup_epochs` needs an augmentation (`augment_quad_jitter` or `augment_shadow`)."
            )

    @property
    def augments(self) -> bool:
        """Whether any training augmentation is on."""
        return self.augment_quad_jitter is not None or self.augment_shadow is not None

    def describe_image_size(self) -> str:
        size = (
            "plate pixel budget (aspect ratio kept)"
            if self.image_size is None
            else "{}x{} (height x width)".format(*self.image_size)
        )
        if self.deskew_max_degrees:
            size += f", tilts up to {self.deskew_max_degrees:g} degrees levelled first (beyond the paper)"
        if self.rectify_plate:
            size += ", trimmed to the plate and its keystone undone first (beyond the paper)"
        return size

    def model_overrides(self) -> dict:
        """The CMRM settings of the command line or recipe (unset ones keep the model's)."""
        return {name: getattr(self, name) for name in MODEL_OVERRIDE_FIELDS if getattr(self, name) is not None}

    @property
    def ablation_spec(self) -> Ablation | None:
        return None if self.ablation is None else ABLATIONS[self.ablation]
