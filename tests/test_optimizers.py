"""MuonWithAdamW: which parameters Muon takes, each part equal to PyTorch's own optimizer, one state dict to resume."""

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lpllm.training.optimizers import MuonWithAdamW, build_muon_with_adamw, muon_parameter_names, orthogonalize
from tiny_lpllm import tiny_model


def training_arguments(**overrides):
    values = dict(
        learning_rate=1e-2, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95, adam_epsilon=1e-8, optim="adamw_torch"
    )
    return SimpleNamespace(**{**values, **overrides})


def small_network(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.LayerNorm(12), nn.Linear(12, 3))


def train_steps(network, optimizer, steps, seed=1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        inputs, targets = torch.randn(16, 6, generator=generator), torch.randn(16, 3, generator=generator)
        nn.functional.mse_loss(network(inputs), targets).backward()
        optimizer.step()
        optimizer.zero_grad()


def test_muon_takes_the_linear_weights_and_leaves_input_and_output_layers_norms_biases_and_slots_to_adamw():
    model = tiny_model()
    names = muon_parameter_names(model)
    parameters = dict(model.named_parameters())
    assert names and all(parameters[name].ndim == 2 for name in names)
    assert any(".cmrm." in name for name in names)  # CMRM's projections
    assert any("language_model.layers.0.self_attn.q_proj" in name for name in names)
    assert any("visual.blocks.0" in name for name in names)
    adamw_parts = ("embed_tokens", "lm_head", "norm", "slot_queries", "patch_embed", "merger", "bias")
    for name in parameters:
        if any(part in name for part in adamw_parts):
            assert name not in names, name


def test_the_embedding_tied_to_the_head_goes_to_adamw_once():
    model = tiny_model(tie_word_embeddings=True)  # as in the embedded default's model
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    optimizer = build_muon_with_adamw(model, [name for name, _ in model.named_parameters()], training_arguments())
    grouped = [parameter for group in optimizer.param_groups for parameter in group["params"]]
    assert len(grouped) == len({id(parameter) for parameter in grouped}) == len(list(model.parameters()))
    muon_ids = {id(p) for group in optimizer.param_groups if group["use_muon"] for p in group["params"]}
    assert id(model.get_input_embeddings().weight) not in muon_ids


def test_weight_decay_follows_the_trainers_decay_names_except_on_muons_matrices():
    network = small_network()
    optimizer = build_muon_with_adamw(network, ["0.weight", "2.weight"], training_arguments())
    decay_by_parameter = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert decay_by_parameter[id(network[0].weight)] == decay_by_parameter[id(network[2].weight)] == 0.1
    assert decay_by_parameter[id(network[0].bias)] == decay_by_parameter[id(network[1].weight)] == 0.0


def test_each_part_steps_exactly_as_pytorchs_own_muon_and_adamw():
    ours, reference = small_network(), small_network()
    matrices = lambda network: [network[0].weight, network[2].weight]  # noqa: E731
    others = lambda network: [network[0].bias, network[1].weight, network[1].bias, network[2].bias]  # noqa: E731
    optimizer = MuonWithAdamW(
        [{"params": matrices(ours), "use_muon": True}, {"params": others(ours), "use_muon": False}],
        lr=1e-2,
        weight_decay=0.1,
        betas=(0.9, 0.95),
    )
    muon = torch.optim.Muon(matrices(reference), lr=1e-2, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    adamw = torch.optim.AdamW(others(reference), lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95))

    class Both:
        def step(self):
            muon.step()
            adamw.step()

        def zero_grad(self):
            muon.zero_grad()
            adamw.zero_grad()

    train_steps(ours, optimizer, 4)
    train_steps(reference, Both(), 4)
    for (name, mine), theirs in zip(ours.named_parameters(), reference.parameters()):
        # AdamW's part is PyTorch's own; Muon's orthogonalises a stack of matrices, rounded in bfloat16 as PyTorch's
        assert torch.allclose(mine, theirs, rtol=0, atol=1e-4), (name, (mine - theirs).abs().max())
    assert not torch.equal(ours[0].weight, small_network()[0].weight)


def test_a_stack_of_matrices_is_orthogonalised_as_each_matrix_alone():
    generator = torch.Generator().manual_seed(0)
    for shape in ((5, 12, 4), (3, 4, 12), (2, 8, 8)):
        stack = torch.randn(*shape, generator=generator)
        together = orthogonalize(stack).float()
        for matrix, result in zip(stack, together):
            alone = orthogonalize(matrix[None]).float()[0]
            assert torch.allclose(result, alone, atol=2e-2), shape
            # near-orthogonal: the singular values land in Muon's band around 1 (about 0.7-1.2)
            singular_values = torch.linalg.svdvals(result)
            assert singular_values.min() > 0.5 and singular_values.max() < 1.3, singular_values


def test_muon_refuses_a_tensor_that_is_not_a_matrix():
    with pytest.raises(ValueError, match=r"Muon takes matrices only; got a parameter of shape \(12,\)"):
        MuonWithAdamW([{"params": [small_network()[0].bias], "use_muon": True}], lr=1e-2)
    with pytest.raises(ValueError, match="Muon needs an integer number >= 1 of Newton-Schulz steps; got 0"):
        MuonWithAdamW([{"params": [small_network()[0].weight], "use_muon": True}], lr=1e-2, newton_schulz_steps=0)


def test_fewer_newton_schulz_steps_orthogonalise_less_exactly():
    generator = torch.Generator().manual_seed(3)
    left, _ = torch.linalg.qr(torch.randn(16, 16, generator=generator))
    right, _ = torch.linalg.qr(torch.randn(48, 16, generator=generator))
    matrix = left @ torch.diag(torch.logspace(-3, 0, 16)) @ right.T  # singular values from 0.001 to 1
    smallest = {
        steps: torch.linalg.svdvals(orthogonalize(matrix[None], steps).float()[0]).min().item() for steps in (1, 3, 5)
    }
    # each iteration multiplies a small singular value by ~3.4 on its way up to Muon's band around 1
    assert smallest[1] < smallest[3] < smallest[5] < 1.3
    assert smallest[3] > 5 * smallest[1] and smallest[5] > 5 * smallest[3]


def test_the_schedule_sets_the_rate_both_parts_use():
    network = small_network()
    optimizer = build_muon_with_adamw(network, [], training_arguments())
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.0 if step >= 1 else 1.0)
    train_steps(network, optimizer, 1)
    schedule.step()
    before = copy.deepcopy(network.state_dict())
    train_steps(network, optimizer, 2)
    # at rate zero neither part moves a weight (nor decays it)
    assert all(torch.equal(before[name], tensor) for name, tensor in network.state_dict().items())


def test_a_reloaded_state_dict_continues_as_the_uninterrupted_optimizer():
    straight, resumed = small_network(), small_network()
    groups = lambda network: [  # noqa: E731
        {"params": [network[0].weight, network[2].weight], "use_muon": True},
        {"params": [network[0].bias, network[1].weight, network[1].bias, network[2].bias], "use_muon": False},
    ]
    straight_optimizer = MuonWithAdamW(groups(straight), lr=1e-2, weight_decay=0.1)
    train_steps(straight, straight_optimizer, 3, seed=1)
    saved_weights, saved_state = copy.deepcopy(straight.state_dict()), copy.deepcopy(straight_optimizer.state_dict())
    train_steps(straight, straight_optimizer, 3, seed=2)

    resumed.load_state_dict(saved_weights)
    resumed_optimizer = MuonWithAdamW(groups(resumed), lr=1e-2, weight_decay=0.1)
    resumed_optimizer.load_state_dict(saved_state)
    train_steps(resumed, resumed_optimizer, 3, seed=2)
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_groups_must_say_which_part_they_belong_to():
    with pytest.raises(ValueError, match="`use_muon`"):
        MuonWithAdamW([{"params": small_network().parameters()}], lr=1e-2)
