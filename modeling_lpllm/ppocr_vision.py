"""PP-OCR's text-recognition encoder behind Qwen3-VL's vision-tower interface (`vision_encoder="ppocr"`).

`Qwen3VLModel` calls `self.visual(pixel_values, grid_thw=image_grid_thw)` and scatters its `pooler_output`, `t * h * w
/ merge**2` tokens per image, into the language model's input. This module computes them from each image with the
backbone and neck of PP-OCRv6 small (`ppocr_recognizer.py`), pretrained on millions of real text lines:

    patches   (sum_i t_i h_i w_i, 3 * T * P * P)   the image processor's output
    images    (3, h_i P, w_i P) per frame           its patch order undone, the T copies of a still image averaged
    BGR       (3, 48, W)                             resized to the encoder's height; W = `ppocr_image_width`,
                                                     or 8 * round(6 w_i / h_i) (the aspect ratio kept)
    encoder   (L_i, 120)                             L_i = width / 8 positions, left to right
    + CTC     (L_i, 120 + C)                         with `ppocr_ctc_classes` (C of them): log_softmax(head(encoder))
                                                     at those classes, concatenated
    pooled    (N_i, 120 [+ C])                       N_i = h_i w_i / merge**2, adaptive average pooling along L_i
    merger    (N_i, out_hidden_size)                 LayerNorm, Linear, GELU, Linear (as Qwen3-VL's merger)

PP-OCR reads text at about its own aspect ratio, not stretched into a strip: `ppocr_image_width` brings every image
back to one plate-like shape (192: 4:1) whatever the processor's `image_size`. The visual tokens are in reading order:
for a strip one token high (e.g. 32 x 768 pixels with patch 16 and merge 2: 24 tokens, one per position of a 48 x 192
image) the language model's positions run left to right with them. The image processor normalises with mean and std 0.5,
i.e. `(pixel / 255 - 0.5) / 0.5`, PP-OCR's own normalisation; PP-OCR reads BGR images, hence the channel flip.
There are no DeepStack features (an empty list: the language model adds none).

With `ppocr_ctc_classes` (beyond the paper) the recognizer's pretrained CTC head is kept too, frozen with the encoder,
and its log-probabilities of the plate characters and the blank travel beside the features: what PP-OCR itself would
read at each position (a doubled character shows as `A`, blank, `A`), which the merger would otherwise have to learn
again from the features.
"""

import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

from .configuration_lpllm import LPLLMConfig
from .ppocr_recognizer import PPOCREncoder, PPOCRRecognizerConfig


# Logits of the CTC head computed at a time: 4 MiB in float32 (56 positions of the 18,710 classes).
CTC_CHUNK_LOGITS = 2**20


def unpatchify(
    patches: torch.Tensor, grid_thw: torch.Tensor, merge_size: int, temporal_patch_size: int, patch_size: int
) -> list[torch.Tensor]:
    """The images (frames) the image processor cut into `patches`: a list of `(3, h P, w P)` tensors, `t` per row of
    `grid_thw`, in order. The `temporal_patch_size` copies of a frame in each patch are averaged."""
    frames = []
    merge, patch = merge_size, patch_size
    for (t, h, w), image_patches in zip(grid_thw.tolist(), patches.split(grid_thw.prod(-1).tolist())):
        # (frame, merged row, merged column, row in merge, column in merge, channel, time, patch row, patch column)
        grid = image_patches.view(t, h // merge, w // merge, merge, merge, 3, temporal_patch_size, patch, patch)
        images = grid.permute(0, 5, 6, 1, 3, 7, 2, 4, 8).reshape(t, 3, temporal_patch_size, h * patch, w * patch)
        frames.extend(images.mean(dim=2).unbind(0))
    return frames


class PPOCRVisionMerger(nn.Module):
    """`(N, neck_hidden_size)` -> `(N, out_hidden_size)`: LayerNorm, Linear, GELU, Linear."""

    def __init__(self, in_size: int, hidden_size: int, out_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_size, eps=1e-6)
        self.linear_fc1 = nn.Linear(in_size, hidden_size)
        self.linear_fc2 = nn.Linear(hidden_size, out_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(F.gelu(self.linear_fc1(self.norm(features))))


class PPOCRVisionModel(nn.Module):
    """Maps the image processor's patches to `h * w / merge**2` visual tokens per image (frame), with PP-OCR's encoder
    (see the module docstring). It answers the calls `Qwen3VLModel` makes of its vision tower.

    `vision_config` gives the patching (`patch_size`, `temporal_patch_size`, `spatial_merge_size`) and the tokens'
    size (`out_hidden_size`); its other fields describe Qwen3-VL's tower and are not used.

    With `config.ppocr_ctc_classes`, `head` is the recognizer's whole CTC head, `(vocab_size, 120)` (named as in
    [`PPOCRRecognizer`], so converted weights load as they are). The whole head, not the rows of the kept classes:
    a log-probability is normalised over every class, and the kept rows alone cannot give that normaliser exactly.
    It costs 2.2M frozen parameters and one more product per position (+20% on the frozen encoder's forward: 48
    plates at 48x192, one CPU thread).
    """

    def __init__(self, config: LPLLMConfig):
        super().__init__()
        vision_config = config.vision_config
        self.patch_size = vision_config.patch_size
        self.temporal_patch_size = vision_config.temporal_patch_size
        self.spatial_merge_size = vision_config.spatial_merge_size
        recognizer_config = PPOCRRecognizerConfig()
        self.encoder = PPOCREncoder(recognizer_config)
        self.image_width = config.ppocr_image_width
        hidden_size = recognizer_config.neck_hidden_size
        # A list, not a buffer: `from_pretrained` builds on the meta device and leaves non-persistent buffers empty.
        self.ctc_classes = None if config.ppocr_ctc_classes is None else list(config.ppocr_ctc_classes)
        if self.ctc_classes is None:
            self.head = None
            features_size = hidden_size
        else:
            self.head = nn.Linear(hidden_size, recognizer_config.vocab_size)
            features_size = hidden_size + len(self.ctc_classes)
        # The hidden width stays the encoder's: the CTC columns widen only the merger's input.
        self.merger = PPOCRVisionMerger(
            features_size, hidden_size * self.spatial_merge_size**2, vision_config.out_hidden_size
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.merger.linear_fc1.weight.dtype

    def encoder_width(self, height: int, width: int) -> int:
        """The width an image of `height x width` is resized to, at the encoder's height: `ppocr_image_width`, or the
        aspect ratio kept, in whole steps of the encoder's 8-pixel positions."""
        if self.image_width is not None:
            return self.image_width
        scaled = width * self.encoder.config.image_height / height
        return 8 * max(1, round(scaled / 8))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """`(batch, 3, 48, W)` BGR images -> `(batch, W/8, 120 [+ C])`: the encoder's features, and with
        `ppocr_ctc_classes` the CTC head's log-probabilities of those classes after them."""
        features = self.encoder(images)
        if self.head is None:
            return features
        return torch.cat([features, self.ctc_log_probs(features).to(features.dtype)], dim=-1)

    def ctc_log_probs(self, features: torch.Tensor) -> torch.Tensor:
        """`(..., 120)` encoder features -> `(..., C)`: `log_softmax(head(features))` at the kept classes, in float32
        (the normaliser sums 18,710 exponentials).

        The positions go through the head a chunk of rows at a time (`CTC_CHUNK_LOGITS` logits): the whole head output
        of one training batch ((48 x 24, 18,710) logits) is 86 MB in float32, and of 5 views of 100 plates read at
        once 0.9 GB, where chunks of a few MB are reused. `log_softmax` is per row, so the chunks give the same numbers.
        """
        rows = features.reshape(-1, features.shape[-1])
        chunk_rows = max(1, CTC_CHUNK_LOGITS // self.head.out_features)
        log_probs = [
            F.log_softmax(self.head(chunk).float(), dim=-1)[:, self.ctc_classes] for chunk in rows.split(chunk_rows)
        ]
        return torch.cat(log_probs).view(*features.shape[:-1], len(self.ctc_classes))

    def forward(
        self, hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs
    ) -> BaseModelOutputWithDeepstackFeatures:
        """
        Args:
            hidden_states: `(sum_i t_i h_i w_i, 3 * temporal_patch_size * patch_size**2)` patches, as the image
                processor writes them.
            grid_thw: `(num_images, 3)`: each image's `(t, h, w)` in patches.

        Returns:
            `pooler_output`: `(sum_i t_i h_i w_i / merge**2, out_hidden_size)` visual tokens, each image's in reading
            order; `last_hidden_state`: the same tokens before the merger, `(..., 120 [+ C])`; `deepstack_features`:
            `[]`.
        """
        frames = unpatchify(
            hidden_states, grid_thw, self.spatial_merge_size, self.temporal_patch_size, self.patch_size
        )
        num_tokens = [
            h * w // self.spatial_merge_size**2 for t, h, w in grid_thw.tolist() for _ in range(t)
        ]
        # Frames of one size are encoded as one batch (with a fixed `image_size`, the whole batch).
        by_size = {}
        for index, frame in enumerate(frames):
            by_size.setdefault(tuple(frame.shape[1:]), []).append(index)
        pooled = [None] * len(frames)
        for (height, width), indices in by_size.items():
            images = torch.stack([frames[index] for index in indices]).flip(1)  # RGB -> BGR
            size = (self.encoder.config.image_height, self.encoder_width(height, width))
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
            sequences = self.encode(images).transpose(1, 2)  # (batch, features, L)
            tokens = F.adaptive_avg_pool1d(sequences, num_tokens[indices[0]]).transpose(1, 2)
            for index, image_tokens in zip(indices, tokens):
                pooled[index] = image_tokens
        features = torch.cat(pooled)
        return BaseModelOutputWithDeepstackFeatures(
            last_hidden_state=features, pooler_output=self.merger(features), deepstack_features=[]
        )


__all__ = ["PPOCRVisionModel", "PPOCRVisionMerger", "unpatchify"]
