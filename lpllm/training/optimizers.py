"""Muon on the hidden weight matrices, AdamW on the rest, as one optimizer.

Muon (Jordan et al. 2024, as `torch.optim.Muon`) replaces each weight matrix's momentum update with the nearest
orthogonal matrix, so every direction of the matrix moves at the same rate: small transformers trained from scratch
reach a given loss in fewer steps than with AdamW. It suits the linear maps inside the network; the input and output
layers (embeddings, output head, patch embedding, and the vision-language projectors, which are the language model's
input layer for images), norms, biases and CMRM's slot queries stay with AdamW, as Muon's authors recommend.

The orthogonalisation (Newton-Schulz iterations in bfloat16, `torch.optim.Muon`'s coefficients) runs once per shape
on all matrices of that shape stacked, instead of once per matrix: for the CPU recipe's 2.4 M-parameter model on 2
cores, `torch.optim.Muon`'s per-matrix loop took ~100 ms a step, ~40% of a training step. The two parts live in one
`torch.optim.Optimizer`, so the Trainer's learning-rate schedule, gradient clipping, checkpoints and
`--resume_from_checkpoint` see a single optimizer.
"""

import math
from collections import defaultdict

import torch
from torch import nn


# The Trainer's `optim` values whose AdamW runs beside Muon (the plain and the fused kernel).
MUON_PARTNERS = ("adamw_torch", "adamw_torch_fused")

# Linear layers kept on AdamW by name: Qwen3-VL's vision-language projectors (`merger`, `deepstack_merger_list`).
INPUT_LAYER_NAMES = ("merger",)

# `torch.optim.Muon`'s quintic Newton-Schulz coefficients and (default) number of iterations.
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NEWTON_SCHULZ_STEPS = 5


def muon_parameter_names(model: nn.Module) -> set[str]:
    """Names of the trainable weights of `model`'s linear layers, except its input and output layers."""
    input_output = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, getter, lambda: None)()
        if module is not None:
            input_output.update(id(parameter) for parameter in module.parameters())
    names = set()
    for module_name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or not module.weight.requires_grad or id(module.weight) in input_output:
            continue
        if any(part in module_name.split(".") or f"{part}_" in module_name for part in INPUT_LAYER_NAMES):
            continue
        names.add(f"{module_name}.weight" if module_name else "weight")
    return names


def orthogonalize(updates: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS, eps: float = 1e-7) -> torch.Tensor:
    """Newton-Schulz approximation (`steps` iterations) of the nearest orthogonal matrix of each matrix of a stack
    `(N, rows, cols)`, in bfloat16, as `torch.optim.Muon` computes it for one matrix."""
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = updates.bfloat16()
    wide = x.size(-2) <= x.size(-1)
    if not wide:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.mT


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon for the parameter groups marked `use_muon: True`, AdamW for the others; one state, one set of groups.

    Args:
        param_groups: dicts with `params`, `use_muon` and optionally `lr` and `weight_decay`; Muon groups may hold
            only 2-D tensors.
        lr: learning rate of both parts. Muon's update is scaled to AdamW's root-mean-square size (Moonshot's
            `match_rms_adamw`: 0.2 * sqrt(larger side)), so a learning rate tuned for AdamW carries over.
        weight_decay: decoupled weight decay of groups that name none.
        betas, eps: AdamW's.
        momentum: Muon's (Nesterov) momentum.
        newton_schulz_steps: iterations of Muon's orthogonalisation; fewer are cheaper and orthogonalise the small
            singular directions less (5: `torch.optim.Muon`'s).
        fused: AdamW's fused kernel (None: PyTorch's choice).
    """

    def __init__(
        self,
        param_groups,
        lr,
        weight_decay=0.0,
        betas=(0.9, 0.999),
        eps=1e-8,
        momentum=0.95,
        newton_schulz_steps=NEWTON_SCHULZ_STEPS,
        fused=None,
    ):
        param_groups = [dict(group) for group in param_groups]
        for group in param_groups:
            if "use_muon" not in group:
                raise ValueError("Every parameter group of MuonWithAdamW needs `use_muon` (True or False).")
            if group["use_muon"]:
                group["params"] = list(group["params"])
                for parameter in group["params"]:
                    if parameter.ndim != 2:
                        raise ValueError(
                            f"Muon takes matrices only; got a parameter of shape {tuple(parameter.shape)}."
                        )
                group.setdefault("momentum", momentum)
                group.setdefault("newton_schulz_steps", newton_schulz_steps)
                steps = group["newton_schulz_steps"]
                if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                    raise ValueError(f"Muon needs an integer number >= 1 of Newton-Schulz steps; got {steps!r}.")
        super().__init__(param_groups, {"lr": lr, "weight_decay": weight_decay})
        self._adamw_settings = {"betas": betas, "eps": eps, "fused": fused}
        self._link_adamw()

    def _link_adamw(self):
        """(Re)build the inner AdamW over this optimizer's own group dicts and state, so that what the schedule
        writes into `param_groups` and what a checkpoint loads into `state` is what it uses."""
        adamw_groups = [group for group in self.param_groups if not group["use_muon"]]
        self._adamw = torch.optim.AdamW(adamw_groups, **self._adamw_settings) if adamw_groups else None
        if self._adamw is not None:
            self._adamw.state = self.state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._link_adamw()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["use_muon"]:
                self._muon_step(group)
        if self._adamw is not None:
            self._adamw.step()
        return loss

    def _muon_step(self, group):
        by_shape = defaultdict(list)
        for parameter in group["params"]:
            if parameter.grad is None:
                continue
            state = self.state[parameter]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(parameter)
            buffer = state["momentum_buffer"]
            buffer.lerp_(parameter.grad, 1 - group["momentum"])
            by_shape[parameter.shape].append((parameter, parameter.grad.lerp(buffer, group["momentum"])))
        lr, weight_decay = group["lr"], group["weight_decay"]
        for shape, entries in by_shape.items():
            updates = orthogonalize(torch.stack([update for _, update in entries]), group["newton_schulz_steps"])
            scaled_lr = lr * 0.2 * math.sqrt(max(shape))
            for (parameter, _), update in zip(entries, updates):
                parameter.mul_(1 - lr * weight_decay)
                parameter.add_(update.to(parameter.dtype), alpha=-scaled_lr)


def build_muon_with_adamw(
    model: nn.Module, decay_parameter_names, args, newton_schulz_steps: int = NEWTON_SCHULZ_STEPS
) -> MuonWithAdamW:
    """`MuonWithAdamW` over `model`'s trainable parameters with `TrainingArguments` `args`' learning rate, weight decay
    (on `decay_parameter_names` only, as the Trainer's own optimizer does) and Adam betas/epsilon."""
    muon_names = muon_parameter_names(model)
    decay_parameter_names = set(decay_parameter_names)
    groups = {
        (True, args.weight_decay): [],
        (False, args.weight_decay): [],
        (False, 0.0): [],
    }
    seen = set()
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad or id(parameter) in seen:
            continue
        seen.add(id(parameter))
        use_muon = name in muon_names
        decay = args.weight_decay if use_muon or name in decay_parameter_names else 0.0
        groups[(use_muon, decay)].append(parameter)
    return MuonWithAdamW(
        [
            {"params": params, "use_muon": use_muon, "weight_decay": decay}
            for (use_muon, decay), params in groups.items()
            if params
        ],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        newton_schulz_steps=newton_schulz_steps,
        fused=True if args.optim == "adamw_torch_fused" else None,
    )
