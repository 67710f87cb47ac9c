"""Where does a training step of the embedded default go? Times one step (fetch rows, collate, forward, backward,
optimizer) of the `recipes/demo_cpu.yaml` model on its synthetic plates in thirteen set-ups, in rounds, side by side in
one process on the same weights:

- `stock`: what TRL's defaults gave: Qwen3-VL's `Conv3d` patch embedding, activation checkpointing on (TRL's
  `SFTConfig` turns it on), every row's PNG decoded and resized at every step;
- `+ linear patch embedding`: `modeling_lpllm.patch_embedding.LinearPatchEmbed` (the same weights, as one matmul);
- `+ no checkpointing`: `activation_checkpointing: false` as well;
- `+ decoded in memory`: `preload_images: true` as well (`lpllm.training.data.DecodedPlateSplit`);
- `+ fused AdamW`: `optim: adamw_torch_fused` as well;
- `+ bf16 autocast`: `bf16: true` as well (matrix products in bfloat16, weights and optimizer in float32). Its loss
  agrees with the others to bfloat16 rounding only (checked within 1%). Timed only on a CPU that computes bfloat16
  natively (AVX512-BF16 or AMX), as the recipe's `bf16_if_native` trains; elsewhere this set-up is left out and the
  ones after it run in float32 (`--bf16 always` times the emulated bfloat16 anyway: ~10x slower on an AVX2 CPU);
- `+ batched vision attention`: `modeling_lpllm.vision_attention.BatchedVisionAttention` as well (one attention call
  for all the plates of a batch instead of one per plate; the model's own since it was added);
- `+ eager attention`: `attn_implementation: eager` as well (attention as two matrix products and a softmax instead of
  PyTorch's fused CPU kernel, whose backward pass is slow on these short sequences);
- `+ cached tokenization`: `PlateCollator` reusing the token ids of the prompts and answers it has already rendered
  (the same batches as TRL's collation, which the set-ups before use). The rounds repeat the same batches, so this
  times the epochs after the first, where every answer has been seen;
- `+ whole-word prompt tokens`: the offline tokenizer's role names and default prompt as one token each
  (`build_offline_processor(whole_tokens=...)`), so the language model runs over 41 tokens per plate instead of 74:
  the recipe today. The set-ups before spell them out character by character, as the tokenizer did before; this one
  reads other token sequences, so its loss is not compared with theirs;
- `+ batched pixel values`: `LPLLMProcessor.fixed_size_image_inputs` as well (the crops' `pixel_values` by one table
  look-up for the batch instead of the image processor's per-image numpy path; the same floats). The set-ups before
  it run the image processor, as the collator did before;
- `+ positions per distinct row`: the model's M-RoPE positions computed once per distinct row of the batch
  (`modeling_lpllm.rope_index`) instead of Qwen3-VL's row-by-row loop, which the set-ups before run; the same
  positions: the recipe today;
- `+ Muon`: `muon: true` as well (`lpllm.training.optimizers.MuonWithAdamW`: Muon's orthogonalised updates on the
  linear layers' weight matrices, the fused AdamW on the rest); an option, off in the recipe. Its first-batch loss
  is the set-up before's (the optimizer acts after it).

    python -m dataset_scripts.build --source synthetic --output data/demo_latin20000 --num 20000 --seed 0 \\
        --layouts br_old br_mercosur ar_mercosur eu_llnnnll us_lllnnnn us_nlllnnn
    python benchmarks/bench_training_step.py --dataset_name data/demo_latin20000
    python benchmarks/bench_training_step.py --last 2 --rounds 10   # the recipe against `+ Muon` only

Prints milliseconds per step (median of the rounds) and the speed-up over the first set-up timed. The numbers depend
on the machine and on its load; nothing here is asserted by the tests.
"""

import argparse
import copy
import random
import statistics
import time
import types
from pathlib import Path

import torch
from datasets import load_from_disk
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    Qwen3VLModel,
    Qwen3VLVisionAttention,
    Qwen3VLVisionPatchEmbed,
)

from lpllm.training.arguments import PlateTrainingArguments
from lpllm.training.collator import PlateCollator
from lpllm.training.data import TRAINING_COLUMNS, DecodedPlateSplit
from lpllm.training.model_setup import build_from_scratch
from lpllm.training.optimizers import build_muon_with_adamw
from lpllm.training.precision import has_native_bf16
from modeling_lpllm import DEFAULT_PLATE_CHARSET, build_char_tokenizer


_STOCK = dict(
    linear_patches=False,
    checkpointing=True,
    decoded=False,
    fused=False,
    bf16=False,
    batched_attention=False,
    eager=False,
    cached_tokens=False,
    whole_tokens=False,
    batched_pixels=False,
    distinct_rows=False,
    muon=False,
)
# Each set-up is the one before it with one more change: (name, setting, value).
_CHANGES = (
    ("+ linear patch embedding", "linear_patches", True),
    ("+ no checkpointing", "checkpointing", False),
    ("+ decoded in memory", "decoded", True),
    ("+ fused AdamW", "fused", True),
    ("+ bf16 autocast", "bf16", True),
    ("+ batched vision attention", "batched_attention", True),
    ("+ eager attention", "eager", True),
    ("+ cached tokenization", "cached_tokens", True),
    ("+ whole-word prompt tokens", "whole_tokens", True),
    ("+ batched pixel values", "batched_pixels", True),
    ("+ positions per distinct row", "distinct_rows", True),
    ("+ Muon", "muon", True),
)


def _cumulative_set_ups() -> tuple[tuple[str, dict], ...]:
    set_ups = [("stock", _STOCK)]
    for name, setting, value in _CHANGES:
        set_ups.append((name, {**set_ups[-1][1], setting: value}))
    return tuple(set_ups)


SET_UPS = _cumulative_set_ups()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_name", default="data/demo_latin20000", help="A dataset_scripts.build folder.")
    parser.add_argument("--config", default="recipes/models/lpllm_strip.json", help="From-scratch model config.")
    parser.add_argument(
        "--image_size", nargs=2, type=int, default=[32, 672], metavar=("HEIGHT", "WIDTH"), help="As in the recipe."
    )
    parser.add_argument("--batch", type=int, default=32, help="Plates per step (the recipe's before Muon; now 48).")
    parser.add_argument("--rows", type=int, default=2000, help="Training rows decoded for the in-memory set-up.")
    parser.add_argument("--steps", type=int, default=10, help="Steps per set-up and round.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--last", type=int, default=0, help="Time only the last N set-ups (0: all).")
    parser.add_argument(
        "--newton_schulz_steps", type=int, default=5, help="Muon's iterations in `+ Muon` (the recipe: 3)."
    )
    parser.add_argument(
        "--bf16", choices=("native", "always"), default="native",
        help="native: bfloat16 set-ups only where the CPU computes bfloat16 natively, float32 elsewhere; always: "
        "time bfloat16 autocast even where it is emulated.",
    )  # fmt: skip
    return parser.parse_args(argv)


def with_convolution_patches(model):
    """A copy of `model` whose patch embedding is Qwen3-VL's own `Conv3d`, with the same weights."""
    model = copy.deepcopy(model)
    linear = model.model.visual.patch_embed
    model.model.visual.patch_embed = Qwen3VLVisionPatchEmbed(model.config.vision_config)
    model.model.visual.patch_embed.load_state_dict(linear.state_dict())
    return model


def with_per_image_vision_attention(model):
    """A copy of `model` whose vision tower attends to one image per call, as Qwen3-VL's own, with the same weights."""
    model = copy.deepcopy(model)
    for block in model.model.visual.blocks:
        batched = block.attn
        block.attn = Qwen3VLVisionAttention(batched.config)
        block.attn.load_state_dict(batched.state_dict())
    return model


def with_row_by_row_positions(model):
    """`model` with Qwen3-VL's own `get_rope_index` (one row at a time) in place of ours (once per distinct row)."""
    model.model.get_rope_index = types.MethodType(Qwen3VLModel.get_rope_index, model.model)
    return model


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.dataset_name, "dataset_dict.json").is_file():
        raise SystemExit(f"{args.dataset_name}: no dataset there; build it with the command in this script's docstring.")
    torch.manual_seed(args.seed)
    base, processor = build_from_scratch(args.config, PlateTrainingArguments(image_size=args.image_size))
    split = load_from_disk(args.dataset_name)["train"].select_columns(list(TRAINING_COLUMNS))
    split = split.select(range(min(args.rows, len(split))))
    decoded = DecodedPlateSplit(split, processor.prepare_images)
    # The spelled-out tokenizer's vocabulary is the first part of the whole-token one's, so one model reads both.
    spelled_out = copy.copy(processor)
    spelled_out.tokenizer = build_char_tokenizer(DEFAULT_PLATE_CHARSET)
    processors = {(True, True): processor, (False, True): spelled_out}
    for whole in (True, False):  # the image processor's own path, as the collator took before
        processors[whole, False] = copy.copy(processors[whole, True])
        processors[whole, False].fixed_size_image_inputs = lambda images: None
    collators = {
        (cached, whole, batched): PlateCollator(
            processor=processors[whole, batched],
            max_length=None,
            completion_only_loss=True,
            max_cached_rows=(1 << 17) if cached else 0,
        )
        for cached in (False, True)
        for whole in (False, True)
        for batched in (False, True)
    }

    set_ups = SET_UPS
    if args.bf16 == "native" and not has_native_bf16(torch.device("cpu")):
        print("No native bfloat16 on this CPU: '+ bf16 autocast' left out, the set-ups after it in float32.")
        set_ups = tuple((name, {**set_up, "bf16": False}) for name, set_up in SET_UPS if name != "+ bf16 autocast")
    if args.last:
        set_ups = set_ups[-args.last :]
    first = set_ups[0][0]
    models = {}
    for name, set_up in set_ups:
        model = copy.deepcopy(base) if set_up["linear_patches"] else with_convolution_patches(base)
        if not set_up["batched_attention"]:
            model = with_per_image_vision_attention(model)
        if not set_up["distinct_rows"]:
            model = with_row_by_row_positions(model)
        model.set_attn_implementation("eager" if set_up["eager"] else "sdpa")
        if set_up["checkpointing"]:
            model.activation_checkpointing_enable()
        model.train()
        if set_up["muon"]:
            settings = types.SimpleNamespace(
                learning_rate=1e-4, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                optim="adamw_torch_fused" if set_up["fused"] else "adamw_torch",
            )  # fmt: skip
            optimizer = build_muon_with_adamw(
                model, [name for name, _ in model.named_parameters()], settings, args.newton_schulz_steps
            )
        else:
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=set_up["fused"])
        models[name] = (model, optimizer, set_up)

    def step(name, indices):
        model, optimizer, set_up = models[name]
        rows = [decoded[i] for i in indices] if set_up["decoded"] else [split[i] for i in indices]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=set_up["bf16"]):
            collator = collators[set_up["cached_tokens"], set_up["whole_tokens"], set_up["batched_pixels"]]
            loss = model(**collator(rows)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    rng = random.Random(args.seed)
    batches = [rng.sample(range(len(split)), min(args.batch, len(split))) for _ in range(args.steps)]
    # The set-ups are one computation stored and ordered differently: the same loss on the same batch, or no comparison.
    first_losses = {name: step(name, batches[0]) for name, _ in set_ups}
    float32_losses = [
        first_losses[name] for name, set_up in set_ups if not (set_up["bf16"] or set_up["whole_tokens"])
    ]
    whole_token_losses = [first_losses[name] for name, set_up in set_ups if set_up["whole_tokens"]]
    tolerance = 1e-4 * max(1.0, abs(first_losses[first]))
    if (
        (float32_losses and max(float32_losses) - min(float32_losses) > tolerance)
        or (whole_token_losses and max(whole_token_losses) - min(whole_token_losses) > tolerance)
        or any(
            abs(first_losses[name] - first_losses[first]) > 100 * tolerance
            for name, set_up in set_ups
            if set_up["bf16"] and not set_up["whole_tokens"]
        )
    ):
        raise SystemExit(f"The set-ups disagree on the first batch's loss: {first_losses}")
    losses = ", ".join(f"{loss:.6f}" for loss in first_losses.values())
    print(f"first-batch loss, every set-up (the last {len(whole_token_losses)} on other tokens): {losses}")
    timings = {name: [] for name, _ in set_ups}
    for round_index in range(args.rounds):
        for name, _ in set_ups:
            start = time.perf_counter()
            for indices in batches:
                step(name, indices)
            timings[name].append(1000 * (time.perf_counter() - start) / args.steps)
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(f"{n} {t[-1]:.1f} ms" for n, t in timings.items()))

    reference = statistics.median(timings[first])
    size = "{}x{}".format(*args.image_size)
    print(f"\n{torch.get_num_threads()} threads, batch {args.batch}, {size} images, median of {args.rounds} "
          f"rounds of {args.steps} steps")
    print("| set-up | ms/step | steps/min | speed-up |\n| --- | --- | --- | --- |")
    for name, _ in set_ups:
        median = statistics.median(timings[name])
        print(f"| {name} | {median:.1f} | {60000 / median:.0f} | {reference / median:.2f}x |")
    return {name: statistics.median(values) for name, values in timings.items()}


if __name__ == "__main__":
    main()
