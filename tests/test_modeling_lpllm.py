"""Qwen3VLForPlateRecognition: forward, loss, generation, equality with stock Qwen3-VL, config validation,
stock checkpoints, and save/load round trips through the Hub format in a fresh process."""

import copy
import json
import os
import textwrap

import pytest
import torch
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

from modeling_lpllm import LPLLMConfig, Qwen3VLForPlateRecognition, plate_messages
from tiny_lpllm import forward_in_a_fresh_process, random_plate_image, save_tiny_checkpoint, tiny_config, tiny_model, tiny_processor


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


def plate_inputs(processor, images, answers=None):
    texts = []
    for index, _ in enumerate(images):
        answer = None if answers is None else answers[index]
        messages = plate_messages(answer=answer)
        texts.append(processor.apply_chat_template(messages, add_generation_prompt=answer is None, tokenize=False))
    return processor(images=images, text=texts, padding=True, return_tensors="pt")


def stock_twin(model):
    """A stock Qwen3VLForConditionalGeneration with the same base weights as `model`."""
    config_dict = {k: v for k, v in model.config.to_dict().items() if not k.startswith("cmrm_")}
    for key in ("model_type", "auto_map", "architectures", "custom_pipelines"):
        config_dict.pop(key, None)
    stock = Qwen3VLForConditionalGeneration(Qwen3VLConfig(**config_dict)).eval()
    stock.generation_config = copy.deepcopy(model.generation_config)  # the same stopping tokens
    missing, unexpected = stock.load_state_dict(model.state_dict(), strict=False)
    assert missing == [] and all(".cmrm." in key for key in unexpected)
    return stock


def assert_equal_up_to_patch_embedding_rounding(actual, expected):
    """Our patch embedding is a matrix product, the stock one a convolution: the same sums in another order (for a still
    image, with the two temporal slices of the weight added first)."""
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def with_linear_patch_embedding(stock):
    """A copy of `stock` with its patch convolution computed as our matrix product (same weights), for bit-exact
    comparisons: in a tiny random model, rounding alone can flip a near-tie in greedy decoding."""
    from modeling_lpllm.patch_embedding import LinearPatchEmbed

    stock = copy.deepcopy(stock)
    convolution = stock.model.visual.patch_embed
    stock.model.visual.patch_embed = LinearPatchEmbed(stock.config.vision_config)
    stock.model.visual.patch_embed.load_state_dict(convolution.state_dict())
    return stock


@pytest.mark.parametrize("frames", ["still", "moving"])
def test_linear_patch_embedding_equals_the_stock_convolution_with_the_same_weights(frames):
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchEmbed

    from modeling_lpllm.patch_embedding import LinearPatchEmbed

    vision_config = tiny_config().vision_config
    stock = Qwen3VLVisionPatchEmbed(vision_config)
    linear = LinearPatchEmbed(vision_config)
    linear.load_state_dict(stock.state_dict())  # same parameter names and shapes: checkpoints load either way
    channels, temporal, size = vision_config.in_channels, vision_config.temporal_patch_size, vision_config.patch_size
    if frames == "still":  # an image: the processor repeats its frame over the temporal patch (the folded product)
        patches = torch.randn(12, channels, 1, size, size).expand(-1, -1, temporal, -1, -1).reshape(12, -1)
    else:
        patches = torch.randn(12, channels * temporal * size * size)
    patches.requires_grad_(True)
    expected = stock(patches)
    actual = linear(patches)
    assert_equal_up_to_patch_embedding_rounding(actual, expected)
    assert actual.shape == (12, vision_config.hidden_size)
    actual.sum().backward()
    linear_gradient = linear.proj.weight.grad.clone()
    expected.sum().backward()
    torch.testing.assert_close(linear_gradient, stock.proj.weight.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("patches_per_image", [[12, 12, 12], [12, 20, 8]])
def test_batched_vision_attention_equals_the_stock_per_image_attention(attn_implementation, patches_per_image):
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionAttention

    from modeling_lpllm.vision_attention import BatchedVisionAttention

    vision_config = copy.deepcopy(tiny_config().vision_config)
    vision_config._attn_implementation = attn_implementation
    torch.manual_seed(0)
    stock = Qwen3VLVisionAttention(vision_config)
    batched = BatchedVisionAttention(vision_config)
    batched.load_state_dict(stock.state_dict())  # the parent's parameter names: checkpoints load either way
    cu_seqlens = torch.tensor([0, *patches_per_image]).cumsum(0).to(torch.int32)
    hidden = torch.randn(int(cu_seqlens[-1]), vision_config.hidden_size, requires_grad=True)
    head_dim = vision_config.hidden_size // vision_config.num_heads
    angles = torch.randn(hidden.shape[0], head_dim)
    position_embeddings = (angles.cos(), angles.sin())
    expected = stock(hidden, cu_seqlens, position_embeddings)
    actual = batched(hidden, cu_seqlens, position_embeddings)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    # No attention across images: changing the last image leaves the others' outputs as they were.
    changed = hidden.detach().clone()
    changed[cu_seqlens[-2]:] += 1.0
    after = batched(changed, cu_seqlens, position_embeddings)
    torch.testing.assert_close(after[: cu_seqlens[-2]], actual[: cu_seqlens[-2]], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(after[cu_seqlens[-2]:], actual[cu_seqlens[-2]:])
    (expected_gradient,) = torch.autograd.grad(expected.square().sum(), hidden)
    (actual_gradient,) = torch.autograd.grad(actual.square().sum(), hidden)
    torch.testing.assert_close(actual_gradient, expected_gradient, rtol=1e-4, atol=1e-5)


def token_layout(*runs, padding=0, left=True):
    """`(mm_token_type_ids row, attention_mask row)` from runs of `(token type, count)`, padded on one side."""
    types = [token_type for token_type, count in runs for _ in range(count)]
    pad = [0] * padding
    mask = [1] * len(types)
    return (pad + types, pad + mask) if left else (types + pad, mask + pad)


def test_rope_index_computed_per_distinct_row_equals_the_parents():
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

    model = tiny_model().model
    one_image = [(0, 3), (1, 6), (0, 5)]  # 6 visual tokens: 2x12 patches merged 2x2 (or 4x6: 2 rows of 3)
    rows = [
        token_layout(*one_image, padding=2),
        token_layout(*one_image, padding=2),  # the same layout as the first: computed once
        token_layout(*one_image, padding=2, left=False),  # the same tokens, padded on the other side
        token_layout((0, 1), (1, 6), (0, 2), (1, 6), (0, 1)),  # two images in one row
        token_layout(*one_image, padding=2),
        token_layout((0, 3), (1, 6), (0, 7)),  # a longer answer
    ]
    types = torch.tensor([row[0] for row in rows])
    attention_mask = torch.tensor([row[1] for row in rows])
    input_ids = torch.randint(0, 50, types.shape)
    types_under_padding = types.masked_fill(attention_mask == 0, 2)  # ignored by the parent, so by ours too
    one_grid = torch.tensor([[1, 2, 12]] * 7)
    two_grids = one_grid.clone()
    two_grids[4:] = torch.tensor([1, 4, 6])
    cases = (
        (input_ids, types_under_padding, one_grid, attention_mask),
        (input_ids, types_under_padding, two_grids, attention_mask),
        (input_ids[3:4].repeat(3, 1), types[3:4].repeat(3, 1), one_grid, None),  # no mask: rows without padding only
    )
    for batch_ids, batch_types, grids, mask in cases:
        arguments = dict(image_grid_thw=grids, attention_mask=mask)
        positions, deltas = model.get_rope_index(batch_ids, batch_types, **arguments)
        expected_positions, expected_deltas = Qwen3VLModel.get_rope_index(model, batch_ids, batch_types, **arguments)
        assert torch.equal(positions, expected_positions) and torch.equal(deltas, expected_deltas)
    # Rows 0, 1 and 4 share a layout: the parent ran on 4 representatives, and their positions differ.
    from modeling_lpllm.rope_index import rope_index_per_distinct_row

    rows_computed = []

    def parent(ids, *args, **kwargs):
        rows_computed.append(len(ids))
        return Qwen3VLModel.get_rope_index(model, ids, *args, **kwargs)

    positions, _ = rope_index_per_distinct_row(
        parent, input_ids, types_under_padding, image_grid_thw=one_grid, attention_mask=attention_mask
    )
    assert rows_computed == [4]
    assert len({tuple(positions[:, row].flatten().tolist()) for row in range(len(rows))}) == 4


def test_the_vision_tower_batches_its_attention():
    from modeling_lpllm.vision_attention import BatchedVisionAttention

    model = tiny_model()
    assert all(isinstance(block.attn, BatchedVisionAttention) for block in model.model.visual.blocks)
    model.set_attn_implementation("eager")
    assert {block.attn.config._attn_implementation for block in model.model.visual.blocks} == {"eager"}


class TestForwardAndGeneration:
    def test_logits_cover_every_position_and_loss_is_finite(self, processor):
        model = tiny_model(processor)
        images = [random_plate_image(1), random_plate_image(2, size=(60, 40))]
        inputs = plate_inputs(processor, images, answers=["皖A12345", "ABC1D23"])
        outputs = model(**inputs, labels=inputs["input_ids"])
        assert outputs.logits.shape == (*inputs["input_ids"].shape, len(processor.tokenizer))
        assert torch.isfinite(outputs.loss)

    def test_cmrm_keeps_the_number_of_visual_tokens(self, processor):
        model = tiny_model(processor)
        inputs = plate_inputs(processor, [random_plate_image(1), random_plate_image(2, size=(200, 30))])
        features = model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        expected = (inputs["image_grid_thw"].prod(-1) // 4).tolist()
        assert [tokens.shape[0] for tokens in features.pooler_output] == expected
        image_tokens = (inputs["input_ids"] == model.config.image_token_id).sum(dim=1).tolist()
        assert image_tokens == expected

    def test_cmrm_changes_the_visual_tokens_it_is_given(self, processor):
        model = tiny_model(processor)
        inputs = plate_inputs(processor, [random_plate_image(1)])
        with torch.no_grad():
            enriched = model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output[0]
            model.config.cmrm_enabled = False
            plain = stock_twin(model).get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        shift = enriched - plain.pooler_output[0]
        assert shift.abs().sum() > 0
        torch.testing.assert_close(shift, shift[:1].expand_as(shift))

    def test_gradients_reach_cmrm_from_the_language_model_loss(self, processor):
        model = tiny_model(processor).train()
        inputs = plate_inputs(processor, [random_plate_image(1)], answers=["AB12CD3"])
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        assert model.cmrm.slot_queries.grad.abs().sum() > 0
        assert model.cmrm.layers[-1].cross_attention.q_proj.weight.grad.abs().sum() > 0

    def test_batched_generation_equals_one_by_one(self, processor):
        model = tiny_model(processor)
        images = [random_plate_image(1), random_plate_image(2, size=(160, 40)), random_plate_image(3, size=(40, 40))]
        batched = plate_inputs(processor, images)
        batched_ids = model.generate(**batched, max_new_tokens=6, do_sample=False)[:, batched["input_ids"].shape[1] :]
        for index, image in enumerate(images):
            single = plate_inputs(processor, [image])
            single_ids = model.generate(**single, max_new_tokens=6, do_sample=False)[:, single["input_ids"].shape[1] :]
            # A plate that ends before the others is padded in the batch until they end too.
            padding = [model.generation_config.pad_token_id] * (batched_ids.shape[1] - single_ids.shape[1])
            assert batched_ids[index].tolist() == single_ids[0].tolist() + padding

    def test_wrong_number_of_image_tokens_is_a_clear_error(self, processor):
        model = tiny_model(processor)
        inputs = plate_inputs(processor, [random_plate_image(1)])
        image_positions = (inputs["input_ids"][0] == model.config.image_token_id).nonzero()
        inputs["input_ids"][0, image_positions[0]] = processor.tokenizer.convert_tokens_to_ids("A")
        with pytest.raises(Exception, match="Image features and image tokens do not match"):
            model(**inputs)

    def test_deepstack_option_adds_the_context_to_deepstack_features(self, processor):
        inputs = plate_inputs(processor, [random_plate_image(1)])
        model = tiny_model(processor, cmrm_apply_to_deepstack=True)
        stock = stock_twin(model)
        with torch.no_grad():
            enriched = model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
            plain = stock.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        shift = enriched.pooler_output[0] - plain.pooler_output[0]
        assert shift.abs().sum() > 0
        for enriched_level, plain_level in zip(enriched.deepstack_features, plain.deepstack_features):
            torch.testing.assert_close(enriched_level[0] - plain_level[0], shift)

    def test_deepstack_features_untouched_by_default(self, processor):
        inputs = plate_inputs(processor, [random_plate_image(1)])
        model = tiny_model(processor)
        with torch.no_grad():
            enriched = model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
            plain = stock_twin(model).get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        assert_equal_up_to_patch_embedding_rounding(enriched.deepstack_features[0][0], plain.deepstack_features[0][0])


class TestEqualityWithStockQwen3VL:
    @pytest.mark.parametrize("overrides", [{"cmrm_alpha": 0.0}, {"cmrm_enabled": False}])
    @pytest.mark.parametrize("second_size", [(120, 30), (94, 24)], ids=["mixed_sizes", "one_size"])
    def test_logits_and_generated_ids_identical(self, processor, overrides, second_size):
        model = tiny_model(processor, **overrides)
        stock = stock_twin(model)
        inputs = plate_inputs(processor, [random_plate_image(1), random_plate_image(4, size=second_size)])
        with torch.no_grad():
            assert_equal_up_to_patch_embedding_rounding(model(**inputs).logits, stock(**inputs).logits)
            stock = with_linear_patch_embedding(stock)
            if second_size == (120, 30):  # images of two sizes take the parent's attention path: the same operations
                assert torch.equal(model(**inputs).logits, stock(**inputs).logits)
            else:  # one attention call for both images instead of one each: the same sums, batched differently
                torch.testing.assert_close(model(**inputs).logits, stock(**inputs).logits, rtol=1e-6, atol=1e-6)
        generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        stock_generated = stock.generate(**inputs, max_new_tokens=6, do_sample=False)
        assert torch.equal(generated, stock_generated)

    def test_cmrm_off_builds_no_cmrm_parameters(self, processor):
        model = tiny_model(processor, cmrm_enabled=False)
        assert model.cmrm is None
        assert not any("cmrm" in name for name, _ in model.named_parameters())


class TestConfig:
    @pytest.mark.parametrize(
        "field, value",
        [
            ("cmrm_num_slots", 0),
            ("cmrm_num_layers", -1),
            ("cmrm_num_heads", 3),  # does not divide hidden size 32
            ("cmrm_dropout", 1.0),
            ("cmrm_dropout", -0.1),
            ("cmrm_alpha", float("nan")),
        ],
    )
    def test_invalid_value_raises_value_error_naming_the_field(self, processor, field, value):
        with pytest.raises(ValueError, match=field):
            tiny_config(processor, **{field: value})

    def test_invalid_from_pretrained_override_is_caught(self, tmp_path):
        save_tiny_checkpoint(tmp_path)
        with pytest.raises(ValueError, match="cmrm_num_heads"):
            Qwen3VLForPlateRecognition.from_pretrained(tmp_path, cmrm_num_heads=3)

    def test_defaults_and_round_trip(self, tmp_path):
        config = LPLLMConfig()
        assert (config.cmrm_num_slots, config.cmrm_num_layers, config.cmrm_enabled) == (8, 2, True)
        assert config.model_type == "lpllm"
        config.save_pretrained(tmp_path)
        reloaded = LPLLMConfig.from_pretrained(tmp_path)
        assert reloaded.to_dict() == config.to_dict()

    def test_from_pretrained_overrides_set_cmrm_fields(self, tmp_path):
        save_tiny_checkpoint(tmp_path)
        model = Qwen3VLForPlateRecognition.from_pretrained(tmp_path, cmrm_alpha=0.25)
        assert model.config.cmrm_alpha == 0.25 and model.cmrm.alpha == 0.25


class TestStockCheckpoint:
    @pytest.fixture(scope="class")
    def stock_dir(self, tmp_path_factory):
        """A tiny stock Qwen3-VL checkpoint, written with transformers alone."""
        directory = tmp_path_factory.mktemp("stock_qwen3vl")
        processor = tiny_processor()
        stock = stock_twin(tiny_model(processor, seed=3))
        stock.save_pretrained(directory)
        processor.save_pretrained(directory)
        assert json.loads((directory / "config.json").read_text())["model_type"] == "qwen3_vl"
        return directory, stock

    def test_loads_with_only_cmrm_reported_missing_and_base_weights_bit_exact(self, stock_dir):
        directory, stock = stock_dir
        model, info = Qwen3VLForPlateRecognition.from_pretrained(directory, output_loading_info=True)
        assert info["unexpected_keys"] == set() and info["mismatched_keys"] == set()
        expected_missing = {f"model.cmrm.{name}" for name, _ in model.cmrm.named_parameters()}
        assert set(info["missing_keys"]) == expected_missing
        model_state = model.state_dict()
        for name, tensor in stock.state_dict().items():
            assert torch.equal(model_state[name], tensor), name

    def test_new_cmrm_weights_are_properly_initialised(self, stock_dir):
        directory, _ = stock_dir
        model = Qwen3VLForPlateRecognition.from_pretrained(directory, cmrm_learnable_alpha=True, cmrm_alpha=0.5)
        for name, parameter in model.cmrm.named_parameters():
            assert torch.isfinite(parameter).all(), name
        std = model.config.text_config.initializer_range
        assert 0.5 * std < model.cmrm.slot_queries.std().item() < 2 * std
        assert model.cmrm.alpha.item() == 0.5
        layer = model.cmrm.layers[0]
        assert torch.equal(layer.layer_norm.weight, torch.ones_like(layer.layer_norm.weight))
        assert torch.equal(layer.cross_attention.q_proj.bias, torch.zeros_like(layer.cross_attention.q_proj.bias))
        assert layer.cross_attention.q_proj.weight.std().item() < 2 * std

    def test_alpha_zero_matches_the_stock_model_exactly(self, stock_dir, processor):
        directory, stock = stock_dir
        model = Qwen3VLForPlateRecognition.from_pretrained(directory, cmrm_alpha=0.0).eval()
        inputs = plate_inputs(processor, [random_plate_image(5)])
        with torch.no_grad():
            assert_equal_up_to_patch_embedding_rounding(model(**inputs).logits, stock(**inputs).logits)
            stock = with_linear_patch_embedding(stock)
            assert torch.equal(model(**inputs).logits, stock(**inputs).logits)
        assert torch.equal(
            model.generate(**inputs, max_new_tokens=5, do_sample=False),
            stock.generate(**inputs, max_new_tokens=5, do_sample=False),
        )


FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    checkpoint, inputs_file, output_file = sys.argv[1:4]
    processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    inputs = torch.load(inputs_file)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Read the license plate."}]}],
        add_generation_prompt=True, tokenize=False,
    )
    results = {"processor_class": type(processor).__name__, "text": text}
    for auto_class in (AutoModel, AutoModelForImageTextToText, AutoModelForCausalLM):
        model = auto_class.from_pretrained(checkpoint, trust_remote_code=True).eval()
        with torch.no_grad():
            results[auto_class.__name__] = (type(model).__name__, model(**inputs).logits)
    torch.save(results, output_file)
    """
)


def test_save_and_load_in_a_fresh_process_without_the_package(tmp_path, processor):
    checkpoint = tmp_path / "checkpoint"
    model, _ = save_tiny_checkpoint(checkpoint, seed=7, cmrm_learnable_alpha=True, cmrm_alpha=0.7)
    saved_files = set(os.listdir(checkpoint))
    assert {"config.json", "model.safetensors", "modeling_lpllm.py", "configuration_lpllm.py", "cmrm.py"} <= saved_files
    assert "patch_embedding.py" in saved_files
    assert {"processing_lpllm.py", "pipeline_lpllm.py", "processor_config.json", "tokenizer.json"} <= saved_files
    assert not any(name.endswith(".bin") for name in saved_files)
    auto_map = json.loads((checkpoint / "config.json").read_text())["auto_map"]
    assert set(auto_map) >= {"AutoConfig", "AutoModel", "AutoModelForImageTextToText", "AutoModelForCausalLM"}

    inputs = dict(plate_inputs(processor, [random_plate_image(1), random_plate_image(2, size=(50, 50))]))
    expected, results = forward_in_a_fresh_process(FRESH_PROCESS_SCRIPT, model, inputs, checkpoint, tmp_path)
    assert results["processor_class"] == "LPLLMProcessor"
    assert results["text"] == processor.apply_chat_template(plate_messages(), add_generation_prompt=True, tokenize=False)
    for auto_name in ("AutoModel", "AutoModelForImageTextToText", "AutoModelForCausalLM"):
        class_name, logits = results[auto_name]
        assert class_name == "Qwen3VLForPlateRecognition"
        assert torch.equal(logits, expected), auto_name
