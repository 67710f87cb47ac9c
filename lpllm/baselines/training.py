"""The training loop shared by the CTC baselines: time-boxed, CPU-friendly, train split only."""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from lpllm.training.augmentation import warmup_strength

from .ctc import CTCCodec
from .preprocessing import CropPreparation, stack_uint8, to_model_input


logger = logging.getLogger(__name__)


@dataclass
class TrainingSettings:
    """Budget, optimiser and augmentation settings. Training stops at whichever of `max_minutes`, `max_steps` or
    `max_epochs` comes first.

    `augment` (optional): a transform from a levelled crop (`CropPreparation.level`) to an RGB image of the reader's
    input size, applied every time a training image is drawn (e.g. `lpllm.training.augmentation`'s shadow and corner
    jitter, resampling to `CropPreparation.size`); its `strength` is 0 in the first epoch and reaches 1 at epoch
    `augment_warmup_epochs` (0: full strength from the start), as in LP-LLM's recipe.
    """

    max_minutes: float = 10.0
    max_steps: int | None = None
    max_epochs: int | None = None
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    max_grad_norm: float = 5.0
    seed: int = 0
    log_every: int = 50
    augment: Callable | None = None
    augment_warmup_epochs: int = 0


def frames_and_targets(
    samples, codec: CTCCodec, preparation: CropPreparation, max_steps_per_image: int, keep_levelled: bool = False
):
    """Every frame of every sample as its own training image with the sample's label, as uint8 pixels prepared by
    `preparation`, and encoded targets. Labels too long for the reader's output steps are left out and counted.

    Returns:
        `(pixels, targets, too_long, levelled)`: with `keep_levelled`, `levelled` holds each frame's levelled crop at
        its own size (for a training augmentation, which resamples it) and `pixels` is None; otherwise the reverse.
    """
    images, targets, too_long = [], [], 0
    for sample in samples:
        encoded = codec.encode(sample.label)
        # CTC needs a blank between repeated characters, so a label needs len + repeats output steps.
        needed = len(encoded) + sum(a == b for a, b in zip(encoded, encoded[1:]))
        if needed > max_steps_per_image:
            too_long += 1
            continue
        for image in sample.images:
            images.append(image)
            targets.append(encoded)
    if too_long:
        logger.warning(
            "%d training labels need more than %d CTC steps and were left out.", too_long, max_steps_per_image
        )
    if keep_levelled:
        return None, targets, too_long, [preparation.level(image) for image in images]
    if not images:
        return None, targets, too_long, None
    pixels = torch.cat([preparation.to_uint8(images[i : i + 1024]) for i in range(0, len(images), 1024)])
    return pixels, targets, too_long, None


@torch.inference_mode()
def sequence_accuracy(
    model: nn.Module, codec: CTCCodec, samples, preparation: CropPreparation, device, batch_size: int = 128
) -> float | None:
    """Exact-match accuracy of greedy decoding (first frame of each sample), for the end-of-training check."""
    if not samples:
        return None
    model.eval()
    hits = 0
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        images = [sample.images[0] for sample in batch]
        pixels = preparation.to_tensor(images).to(device)
        hits += sum(pred == sample.label for pred, sample in zip(codec.decode(model(pixels)), batch))
    return hits / len(samples)


def train_ctc(
    model: nn.Module,
    codec: CTCCodec,
    samples,
    preparation: CropPreparation,
    device: torch.device,
    settings: TrainingSettings,
) -> dict:
    """Trains `model` with CTC on `samples` (EvalSample-like: `.images`, `.label`) within the budget, on their
    crops prepared by `preparation`.

    Returns:
        a summary of the run (steps, epochs, minutes, stop reason, last loss) for the checkpoint's config.
    """
    # channels_last runs these CNNs ~25% faster on CPU (max-pooling and convolutions), and no slower on GPU.
    model.to(device, memory_format=torch.channels_last)
    with torch.no_grad():
        steps_per_image = model(torch.zeros(1, 3, *preparation.size, device=device)).shape[1]
    augment = settings.augment
    pixels, targets, too_long, levelled = frames_and_targets(
        samples, codec, preparation, steps_per_image, keep_levelled=augment is not None
    )
    if not targets:
        raise ValueError("No training image is left: every label is too long for the reader or the split is empty.")
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    ctc_loss = nn.CTCLoss(blank=codec.blank, zero_infinity=True)
    generator = torch.Generator().manual_seed(settings.seed)
    steps_per_epoch = math.ceil(len(targets) / settings.batch_size)
    step, epoch, stopped_by, running_loss, last_loss = 0, 0, "max_epochs", 0.0, None
    started = time.monotonic()
    deadline = started + settings.max_minutes * 60.0
    progress = tqdm(total=settings.max_steps, desc="Training", unit="step")
    model.train()
    while settings.max_epochs is None or epoch < settings.max_epochs:
        order = torch.randperm(len(targets), generator=generator)
        if augment is not None:
            augment.strength = warmup_strength(epoch, settings.augment_warmup_epochs)
        for start in range(0, len(order), settings.batch_size):
            if time.monotonic() >= deadline:
                stopped_by = "max_minutes"
                break
            if settings.max_steps is not None and step >= settings.max_steps:
                stopped_by = "max_steps"
                break
            indices = order[start : start + settings.batch_size]
            batch_targets = [targets[i] for i in indices.tolist()]
            batch_pixels = (
                pixels[indices] if augment is None else stack_uint8([augment(levelled[i]) for i in indices.tolist()])
            )
            inputs = to_model_input(batch_pixels).to(device, memory_format=torch.channels_last)
            log_probs = model(inputs).log_softmax(-1)
            input_lengths = torch.full((len(indices),), log_probs.shape[1], dtype=torch.long)
            loss = ctc_loss(
                log_probs.transpose(0, 1),
                torch.tensor([i for target in batch_targets for i in target], dtype=torch.long),
                input_lengths,
                torch.tensor([len(target) for target in batch_targets], dtype=torch.long),
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            step += 1
            last_loss = loss.item()
            running_loss += last_loss
            progress.update(1)
            if step % settings.log_every == 0:
                logger.info("step %d (epoch %d): loss %.4f", step, epoch, running_loss / settings.log_every)
                running_loss = 0.0
        else:
            epoch += 1
            continue
        break
    progress.close()
    model.eval()
    seconds = time.monotonic() - started
    return {
        "steps": step,
        "epochs": step / steps_per_epoch,
        "wall_minutes": seconds / 60.0,
        "stopped_by": stopped_by,
        "final_loss": last_loss,
        "num_train_images": len(targets),
        "num_labels_too_long": too_long,
    }


__all__ = ["TrainingSettings", "frames_and_targets", "sequence_accuracy", "train_ctc"]
