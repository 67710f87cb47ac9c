"""CMRM against an independent re-computation of the paper's equations, and its per-image behaviour."""

import math

import pytest
import torch

from modeling_lpllm import CharacterAwareReasoningModule
from tiny_lpllm import tiny_config


def make_cmrm(seed=0, **overrides):
    torch.manual_seed(seed)
    module = CharacterAwareReasoningModule(tiny_config(**overrides))
    with torch.no_grad():
        module.slot_queries.normal_(0.0, 0.5)
        for layer in module.layers:
            layer.layer_norm.weight.uniform_(0.5, 1.5)
            layer.layer_norm.bias.normal_(0.0, 0.1)
    return module.eval()


def reference_cmrm(module, tokens):
    """Eq. (3)-(8) written out with plain matrix products, for one image `tokens` (N, D)."""
    slots = module.slot_queries.detach().clone()
    num_heads = module.layers[0].cross_attention.num_heads
    for layer in module.layers:
        attention = layer.cross_attention
        query = slots @ attention.q_proj.weight.T + attention.q_proj.bias
        key = tokens @ attention.k_proj.weight.T + attention.k_proj.bias
        value = tokens @ attention.v_proj.weight.T + attention.v_proj.bias
        head_dim = query.shape[1] // num_heads
        heads = []
        for head in range(num_heads):
            part = slice(head * head_dim, (head + 1) * head_dim)
            scores = query[:, part] @ key[:, part].T / math.sqrt(head_dim)
            heads.append(torch.softmax(scores, dim=-1) @ value[:, part])
        attended = torch.cat(heads, dim=1) @ attention.o_proj.weight.T + attention.o_proj.bias
        residual = slots + attended
        mean = residual.mean(dim=-1, keepdim=True)
        variance = residual.var(dim=-1, unbiased=False, keepdim=True)
        slots = (residual - mean) / torch.sqrt(variance + layer.layer_norm.eps)
        slots = slots * layer.layer_norm.weight + layer.layer_norm.bias
    context = slots.mean(dim=0)
    alpha = float(module.alpha)
    return tokens + alpha * context, context


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_matches_independent_recomputation_of_the_equations(alpha):
    module = make_cmrm(cmrm_alpha=alpha)
    images = [torch.randn(6, 32), torch.randn(11, 32)]
    with torch.no_grad():
        outputs, slots = module.forward_with_slots(images)
    contexts = slots.mean(dim=1)
    for tokens, output, context in zip(images, outputs, contexts):
        expected, expected_context = reference_cmrm(module, tokens)
        torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(context, expected_context, rtol=1e-5, atol=1e-5)


def test_preserves_shape_and_token_count_and_adds_one_vector_per_image():
    module = make_cmrm()
    images = [torch.randn(3, 32), torch.randn(9, 32), torch.randn(1, 32)]
    with torch.no_grad():
        outputs = module(images)
    assert [tuple(output.shape) for output in outputs] == [(3, 32), (9, 32), (1, 32)]
    for tokens, output in zip(images, outputs):
        shift = output - tokens
        # H'_i - H_i = alpha * g is the same vector for every token of an image, and not zero.
        torch.testing.assert_close(shift, shift[:1].expand_as(shift))
        assert shift.abs().sum() > 0


def test_an_image_output_does_not_depend_on_its_batch_mates():
    module = make_cmrm()
    torch.manual_seed(1)
    target = torch.randn(7, 32)
    with torch.no_grad():
        alone = module([target])[0]
        with_short_mate = module([torch.randn(2, 32), target])[1]
        with_long_mate = module([target, torch.randn(30, 32) * 10])[0]
    torch.testing.assert_close(with_short_mate, alone, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(with_long_mate, alone, rtol=1e-6, atol=1e-6)


def test_gradients_reach_slot_queries_and_attention_weights():
    module = make_cmrm()
    module.train()
    outputs = module([torch.randn(5, 32), torch.randn(8, 32)])
    torch.stack([output.sum() for output in outputs]).sum().backward()
    named_grads = {name: parameter.grad for name, parameter in module.named_parameters()}
    for name in ("slot_queries", "layers.0.cross_attention.q_proj.weight", "layers.1.cross_attention.k_proj.weight"):
        assert named_grads[name] is not None and named_grads[name].abs().sum() > 0, name


def test_alpha_is_a_constant_or_a_trained_parameter():
    fixed = make_cmrm(cmrm_alpha=0.5)
    assert fixed.alpha == 0.5
    assert "alpha" not in dict(fixed.named_parameters())

    learnable = make_cmrm(cmrm_alpha=0.5, cmrm_learnable_alpha=True)
    parameters = dict(learnable.named_parameters())
    assert "alpha" in parameters and parameters["alpha"].item() == 0.5
    learnable.train()
    sum(output.sum() for output in learnable([torch.randn(4, 32)])).backward()
    assert parameters["alpha"].grad is not None and parameters["alpha"].grad.item() != 0


def test_alpha_zero_returns_the_visual_tokens_unchanged():
    module = make_cmrm(cmrm_alpha=0.0)
    tokens = torch.randn(5, 32)
    with torch.no_grad():
        assert torch.equal(module([tokens])[0], tokens)


def test_rejects_an_empty_image_list_and_wrong_shapes():
    module = make_cmrm()
    with pytest.raises(ValueError, match="empty list of images"):
        module([])
    with pytest.raises(ValueError, match=r"image 1 has shape \(4, 16\)"):
        module([torch.randn(3, 32), torch.randn(4, 16)])
    with pytest.raises(ValueError, match=r"image 0 has shape \(0, 32\)"):
        module([torch.randn(0, 32)])


def reference_last_layer_attention(module, tokens):
    """The last layer's attention weights `softmax(Q K^T / sqrt(d))` averaged over heads, for one image `tokens`
    (N, D), with the slots refined by the layers before it as in `reference_cmrm`."""
    slots = module.slot_queries.detach().clone()
    for layer in module.layers:
        attention = layer.cross_attention
        query = slots @ attention.q_proj.weight.T + attention.q_proj.bias
        key = tokens @ attention.k_proj.weight.T + attention.k_proj.bias
        value = tokens @ attention.v_proj.weight.T + attention.v_proj.bias
        head_dim = query.shape[1] // attention.num_heads
        weights, heads = [], []
        for head in range(attention.num_heads):
            part = slice(head * head_dim, (head + 1) * head_dim)
            weights.append(torch.softmax(query[:, part] @ key[:, part].T / math.sqrt(head_dim), dim=-1))
            heads.append(weights[-1] @ value[:, part])
        attended = torch.cat(heads, dim=1) @ attention.o_proj.weight.T + attention.o_proj.bias
        slots = layer.layer_norm(slots + attended)
    return torch.stack(weights).mean(dim=0)


def test_slot_attention_is_the_last_layers_attention_averaged_over_heads_per_image():
    module = make_cmrm()
    images = [torch.randn(6, 32), torch.randn(11, 32), torch.randn(1, 32)]
    with torch.no_grad():
        maps = module.slot_attention(images)
        outputs_before = module(images)
        expected = [reference_last_layer_attention(module, tokens) for tokens in images]
    assert [tuple(weights.shape) for weights in maps] == [(8, 6), (8, 11), (8, 1)]
    for weights, reference in zip(maps, expected):
        torch.testing.assert_close(weights, reference, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(8))  # the padding of shorter images gets none
    with torch.no_grad():
        assert all(torch.equal(after, before) for after, before in zip(module(images), outputs_before))
