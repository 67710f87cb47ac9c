"""The convolutional stem option (`vision_stem_channels`): it convolves the real image of each merge window, keeps
the patch embedding's inputs, outputs and token order, trains, and travels with a checkpoint."""

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_lpllm import plate_messages
from modeling_lpllm.conv_stem import MergeWindowConvStem
from modeling_lpllm.processing_lpllm import build_plate_image_processor
from tiny_lpllm import random_plate_image, tiny_config, tiny_model, tiny_processor


def reference_tokens(stem: MergeWindowConvStem, frames: torch.Tensor) -> torch.Tensor:
    """The stem computed on the picture itself: `frames` is `(temporal, channels, height, width)`, normalised, one
    merge window high; each `height x height` window is convolved on its own and its tokens read row by row."""
    temporal, channels, height, width = frames.shape
    windows = frames.unflatten(3, (width // height, height)).permute(3, 1, 0, 2, 4)  # (windows, C, T, H, H)
    pixels = windows.reshape(-1, channels * temporal, height, height)
    features = stem.patchify(pixels)
    features = features + stem.conv2(stem.activation(stem.conv1(stem.activation(features))))
    tokens = stem.project(stem.activation(features))  # (windows, embed_dim, merge, merge)
    return tokens.permute(0, 2, 3, 1).reshape(-1, stem.embed_dim)


def randomised(stem: MergeWindowConvStem) -> MergeWindowConvStem:
    torch.manual_seed(0)
    for parameter in stem.parameters():
        torch.nn.init.normal_(parameter, std=0.1)  # conv2 starts at zero in a model: make every layer count here
    return stem


def test_stem_convolves_each_merge_window_of_the_image_the_processor_was_given():
    vision_config = tiny_config().vision_config
    stem = randomised(MergeWindowConvStem(vision_config, channels=6))
    image_processor = build_plate_image_processor(32 * 96, 32 * 96)
    picture = np.random.default_rng(0).integers(0, 256, size=(32, 96, 3), dtype=np.uint8)
    inputs = image_processor(images=[Image.fromarray(picture)], do_resize=False, return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 2, 6]]
    normalised = torch.from_numpy(picture).permute(2, 0, 1).float() / 255 * 2 - 1  # mean 0.5, std 0.5
    frames = normalised[None].expand(vision_config.temporal_patch_size, -1, -1, -1)  # a still image's repeated frame
    with torch.no_grad():
        actual = stem(inputs["pixel_values"])
        expected = reference_tokens(stem, frames)
    assert actual.shape == (12, vision_config.hidden_size)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_frames_that_differ_take_the_full_temporal_convolution():
    vision_config = tiny_config().vision_config
    stem = randomised(MergeWindowConvStem(vision_config, channels=6))
    temporal, channels, patch, merge = 2, 3, vision_config.patch_size, vision_config.spatial_merge_size
    frames = torch.randn(temporal, channels, patch * merge, patch * merge * 3)
    # Qwen2-VL's patch order: (windows, rows, cols, channels, temporal, patch, patch), flattened per patch.
    patches = frames.reshape(temporal, channels, 1, merge, patch, 3, merge, patch)
    patches = patches.permute(2, 5, 3, 6, 1, 0, 4, 7).reshape(3 * merge * merge, -1)
    with torch.no_grad():
        torch.testing.assert_close(stem(patches), reference_tokens(stem, frames), rtol=1e-5, atol=1e-5)


def test_invalid_stem_width_is_rejected_naming_the_field():
    from huggingface_hub.errors import StrictDataclassFieldValidationError

    with pytest.raises(ValueError, match="vision_stem_channels"):
        tiny_config(vision_stem_channels=-1)
    for value in (True, 2.5):  # the config's typed fields reject other types when they are set
        with pytest.raises(StrictDataclassFieldValidationError, match="vision_stem_channels"):
            tiny_config(vision_stem_channels=value)


def test_patch_size_must_split_into_stem_cells():
    vision_config = tiny_config().vision_config
    vision_config.patch_size = 14
    with pytest.raises(ValueError, match="patch_size"):
        MergeWindowConvStem(vision_config, channels=4)


def test_a_saved_stem_loads_back_unchanged(tmp_path):
    from modeling_lpllm import Qwen3VLForPlateRecognition

    model = tiny_model(vision_stem_channels=8)
    with torch.no_grad():
        model.model.visual.patch_embed.conv2.weight.fill_(0.5)  # not what initialisation would give
    model.save_pretrained(tmp_path)
    reloaded = Qwen3VLForPlateRecognition.from_pretrained(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name


def test_model_with_the_stem_trains_it_and_starts_from_a_finite_well_scaled_embedding():
    processor = tiny_processor()
    model = tiny_model(processor, vision_stem_channels=8).train()
    stem = model.model.visual.patch_embed
    assert isinstance(stem, MergeWindowConvStem)
    assert torch.equal(stem.conv2.weight, torch.zeros_like(stem.conv2.weight))  # the residual block starts as identity
    text = processor.apply_chat_template(plate_messages(answer="AB12CD3"), tokenize=False)
    inputs = processor(images=[random_plate_image(1)], text=[text], return_tensors="pt")
    embedded = stem(inputs["pixel_values"])
    assert torch.isfinite(embedded).all() and 0.05 < embedded.std().item() < 20
    before = {name: parameter.detach().clone() for name, parameter in stem.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # the zero-initialised conv2 passes no gradient to conv1 until its first update
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, parameter in stem.named_parameters():
        assert not torch.equal(parameter, before[name]), name
