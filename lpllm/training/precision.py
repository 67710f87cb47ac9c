"""Whether to train in bfloat16 autocast, decided by the hardware (`bf16_if_native`).

bfloat16 autocast pays only where the matrix units compute in bfloat16. On a CPU without AVX512-BF16 or AMX, PyTorch
emulates it: a training step of the embedded default took ~10x as long as in float32 on an AVX2-only AMD EPYC (4.6 s
against 0.45 s), where an AVX512-BF16 Xeon ran it ~1.3x faster than float32. A recipe meant for any machine therefore
asks for bfloat16 where it is native and float32 elsewhere.
"""

import torch
from transformers.utils import logging


logger = logging.get_logger(__name__)


def has_native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 matrix products in hardware: a CUDA GPU with bfloat16 support (Ampere and
    later), or a CPU with AVX512-BF16 or AMX. False for other devices and CPUs, whose support PyTorch cannot report."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        return any(check() for check in checks if check is not None)
    return False


def apply_bf16_if_native(training_args, native: bool) -> None:
    """Sets `training_args.bf16` (and the mixed precision the Trainer hands to Accelerate) to `native`, and says
    which it chose. `fp16` cannot be combined with it: ValueError."""
    if training_args.fp16:
        raise ValueError("`bf16_if_native` chooses between bfloat16 and float32; it cannot be combined with `fp16`.")
    if training_args.bf16 != native and training_args.deepspeed:
        raise ValueError(
            "`bf16_if_native` cannot change the precision of a DeepSpeed run (its config is fixed when the arguments "
            f"are parsed): set `bf16: {str(native).lower()}` and `bf16_if_native: false`."
        )
    training_args.bf16 = native
    training_args.mixed_precision = "bf16" if native else "no"
    logger.warning(
        f"bf16_if_native: {'bfloat16 autocast' if native else 'float32'} on {training_args.device} "
        f"({'native' if native else 'no native'} bfloat16 matrix products)."
    )
