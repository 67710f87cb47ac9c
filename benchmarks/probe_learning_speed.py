"""How fast does a from-scratch LP-LLM leave its loss plateau? A short plain-PyTorch training loop (no Trainer, no
generation) that prints teacher-forced validation accuracy against wall-clock minutes, to compare model shapes,
image layouts, batch sizes and losses cheaply before a full `train_sft.py` run.

The probes in results/embedded_default.md ran two at a time on the 2-core machine, one thread each:
    OMP_NUM_THREADS=1 python benchmarks/probe_learning_speed.py --name base --minutes 8
    OMP_NUM_THREADS=1 python benchmarks/probe_learning_speed.py --name strip --minutes 8 --batch 16 \\
        --config recipes/models/lpllm_strip.json --image_size 32 224

"teacher-forced exact" is the share of validation plates whose every answer token is the argmax given the true
previous tokens: an upper bound of greedy exact match, close to it once the model reads plates.
"""

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from datasets import load_from_disk
from trl.trainer.utils import remove_none_values

from lpllm.training.arguments import PlateTrainingArguments
from lpllm.training.collator import PlateCollator
from lpllm.training.model_setup import build_from_scratch
from lpllm.training.optimizers import build_muon_with_adamw


COLUMNS = ("images", "prompt", "completion")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="probe", help="Label printed on every line.")
    parser.add_argument("--dataset_name", default="data/demo_latin20000", help="A dataset_scripts.build folder.")
    parser.add_argument("--config", default="recipes/models/lpllm_small.json", help="From-scratch model config.")
    parser.add_argument("--override", default="{}", help="JSON merged into the model config.")
    parser.add_argument(
        "--image_size", nargs=2, type=int, metavar=("HEIGHT", "WIDTH"), help="Fixed resize (default: pixel budget)."
    )
    parser.add_argument("--pixels", type=int, default=6912, help="Pixel budget (min = max) without --image_size.")
    parser.add_argument("--prompt", default=None, help="Replace the dataset's instruction text ('' for none).")
    parser.add_argument("--curriculum_minutes", type=float, default=0.0, help="Train on severity <= 2 this long first.")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--adam_beta2", type=float, default=0.999)
    parser.add_argument(
        "--optimizer", choices=("adamw", "muon"), default="adamw", help="muon: Muon on the linear layers' weights."
    )
    parser.add_argument("--warmup_steps", type=int, default=100)
    parser.add_argument("--cosine_steps", type=int, default=2500, help="Length of the cosine decay, in steps.")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--every", type=float, default=0.5, help="Minutes between two validation readings.")
    parser.add_argument("--num_validation", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def build_model(args):
    config = json.loads(Path(args.config).read_text())
    for key, value in json.loads(args.override).items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    with tempfile.TemporaryDirectory() as folder:
        config_file = Path(folder) / "config.json"
        config_file.write_text(json.dumps(config))
        training_args = PlateTrainingArguments(
            image_size=args.image_size, min_pixels=args.pixels, max_pixels=args.pixels
        )
        return build_from_scratch(str(config_file), training_args)


def teacher_forced_accuracy(model, batches):
    """(exact, character) accuracy of the argmax next tokens over the supervised answer tokens."""
    model.eval()
    exact = rows = correct = characters = 0
    with torch.no_grad():
        for batch in batches:
            inputs = {key: value for key, value in batch.items() if key != "labels"}
            predicted = model(**inputs).logits[:, :-1].argmax(-1)
            labels = batch["labels"][:, 1:]
            supervised = labels != -100
            right = predicted == labels
            exact += (right | ~supervised).all(dim=1).sum().item()
            rows += len(labels)
            correct += (right & supervised).sum().item()
            characters += supervised.sum().item()
    model.train()
    return exact / rows, correct / characters


def main(argv=None):
    args = parse_args(argv)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    model, processor = build_model(args)
    print(f"{args.name}: {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    dataset = load_from_disk(args.dataset_name)
    train = dataset["train"]
    collator = PlateCollator(processor=processor, max_length=None, completion_only_loss=True)

    def row(split, index):
        example = remove_none_values({column: split[index][column] for column in COLUMNS})
        if args.prompt is not None:
            user_turn = example["prompt"][0]
            images = [part for part in user_turn["content"] if part["type"] == "image"]
            user_turn["content"] = images + ([{"type": "text", "text": args.prompt}] if args.prompt else [])
        return example

    validation = [row(dataset["validation"], index) for index in range(args.num_validation)]
    validation_batches = [collator(validation[start : start + 64]) for start in range(0, len(validation), 64)]
    mild = []
    if args.curriculum_minutes > 0:
        if "severity" not in train.column_names:
            raise SystemExit(f"--curriculum_minutes needs a `severity` column in {args.dataset_name} [train].")
        mild = [index for index, severity in enumerate(train["severity"]) if severity <= 2]

    optimizer_args = SimpleNamespace(
        learning_rate=args.lr, weight_decay=0.01, adam_beta1=0.9, adam_beta2=args.adam_beta2, adam_epsilon=1e-8,
        optim="adamw_torch",
    )  # fmt: skip
    if args.optimizer == "muon":
        optimizer = build_muon_with_adamw(model, [name for name, _ in model.named_parameters()], optimizer_args)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, args.adam_beta2))

    def lr_factor(step):
        progress = min(step, args.cosine_steps) / args.cosine_steps
        return min(1.0, (step + 1) / args.warmup_steps) * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    order, cursor, step, losses = list(range(len(train))), len(train), 0, []
    start, next_reading = time.monotonic(), args.every
    model.train()
    while True:
        minutes = (time.monotonic() - start) / 60
        if minutes >= next_reading or minutes >= args.minutes:
            exact, character = teacher_forced_accuracy(model, validation_batches)
            recent = losses[-20:] or [float("nan")]
            print(
                f"{args.name} min {minutes:.2f} step {step} loss {sum(recent) / len(recent):.3f} "
                f"teacher-forced exact {exact:.3f} character {character:.3f}",
                flush=True,
            )
            next_reading += args.every
            if minutes >= args.minutes:
                break
        if minutes < args.curriculum_minutes:
            indices = random.sample(mild, args.batch)
        else:
            if cursor + args.batch > len(order):
                random.shuffle(order)
                cursor = 0
            indices = order[cursor : cursor + args.batch]
            cursor += args.batch
        loss = model(**collator([row(train, index) for index in indices])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        step += 1


if __name__ == "__main__":
    main()
