"""PP-OCRv6's small text recognizer (PaddleOCR, Apache-2.0; exported to ONNX in the rapidocr wheel) in plain PyTorch.

The network in its deployed form, every batch norm folded into the convolution before it, so the exported weights
load one to one (`lpllm/training/ppocr_conversion.py`):

    x                                          (batch, 3, 48, W)     BGR, (pixel / 255 - 0.5) / 0.5
    stem: two branches, stride 4               (batch, 96, 12, W/4)
    13 LCNetV4 blocks, height stride 4         (batch, 384, 3, W/4)
    average pool 3 x 2                         (batch, 384, 1, W/8)
    light SVTR neck                            (batch, W/8, 120)      the encoder's output
    CTC head                                   (batch, W/8, 18710)    logits: blank, 18708 characters, space

An LCNetV4 block mixes space with a 3x3 depthwise convolution (and, in five blocks, squeeze-and-excitation), then
channels with `1x1 -> GELU -> 1x1` at twice the width, with a residual connection where the shape is kept. The neck
reduces the channels to 120, adds a 1x7 depthwise convolution, runs two pre-norm transformer layers over the W/8
positions and adds back a 1x1 skip branch from the backbone.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


# PP-OCRv6 small's blocks: (input channels, output channels, height stride, squeeze-and-excitation).
PPOCR_V6_SMALL_BLOCKS = (
    (96, 96, 1, True),
    (96, 96, 1, False),
    (96, 96, 1, False),
    (96, 192, 2, False),
    (192, 192, 1, True),
    (192, 192, 1, False),
    (192, 192, 1, True),
    (192, 192, 1, False),
    (192, 192, 1, True),
    (192, 192, 1, False),
    (192, 384, 2, False),
    (384, 384, 1, True),
    (384, 384, 1, False),
)


@dataclass(frozen=True)
class PPOCRRecognizerConfig:
    """Architecture of the recognizer; the defaults are PP-OCRv6 small's.

    Args:
        image_height: Height of the images the recognizer reads (the backbone reduces it to 1).
        stem_channels: `(middle, output)` channels of the stem.
        blocks: One `(input channels, output channels, height stride, squeeze-and-excitation)` per LCNetV4 block.
        neck_hidden_size: Width of the neck's transformer layers, and of the encoder's output.
        neck_num_layers: Transformer layers of the neck.
        neck_num_heads: Attention heads of each; must divide `neck_hidden_size`.
        neck_mlp_ratio: Hidden width of each layer's MLP over `neck_hidden_size`.
        neck_kernel_size: Width of the neck's depthwise convolution along the sequence.
        vocab_size: CTC classes: the blank (index 0), the dictionary's characters, and the space (last).
    """

    image_height: int = 48
    stem_channels: tuple[int, int] = (48, 96)
    blocks: tuple[tuple[int, int, int, bool], ...] = PPOCR_V6_SMALL_BLOCKS
    neck_hidden_size: int = 120
    neck_num_layers: int = 2
    neck_num_heads: int = 8
    neck_mlp_ratio: float = 2.0
    neck_kernel_size: int = 7
    vocab_size: int = 18710


class StemBlock(nn.Module):
    """`(batch, 3, H, W)` -> `(batch, out, H/4, W/4)`: a strided 3x3 convolution, then two branches (a max pool, and
    two 2x2 convolutions) concatenated and reduced by a second strided 3x3 convolution and a 1x1 convolution."""

    def __init__(self, config: PPOCRRecognizerConfig):
        super().__init__()
        middle, out = config.stem_channels
        self.stem1 = nn.Conv2d(3, middle, 3, stride=2, padding=1)
        self.stem2a = nn.Conv2d(middle, middle // 2, 2)
        self.stem2b = nn.Conv2d(middle // 2, middle, 2)
        self.stem3 = nn.Conv2d(2 * middle, middle, 3, stride=2, padding=1)
        self.stem4 = nn.Conv2d(middle, out, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.stem1(pixels))
        # PaddlePaddle's "SAME" padding of the 2x2 kernels: one row and one column, after the image.
        convolved = F.relu(self.stem2a(F.pad(hidden, (0, 1, 0, 1))))
        convolved = F.relu(self.stem2b(F.pad(convolved, (0, 1, 0, 1))))
        pooled = F.max_pool2d(F.pad(hidden, (0, 1, 0, 1), value=float("-inf")), 2, stride=1)
        hidden = F.relu(self.stem3(torch.cat([pooled, convolved], dim=1)))
        return F.relu(self.stem4(hidden))


class SqueezeExcitation(nn.Module):
    """Scales each channel by a gate computed from the mean of all channels: `x * hardsigmoid(W2 relu(W1 mean(x)))`."""

    def __init__(self, channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // 4, 1)
        self.expand = nn.Conv2d(channels // 4, channels, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        gate = hidden.mean(dim=(2, 3), keepdim=True)
        return hidden * F.hardsigmoid(self.expand(F.relu(self.reduce(gate))))


class LCNetV4Block(nn.Module):
    """`(batch, in, H, W)` -> `(batch, out, H / stride, W)`: depthwise 3x3 (+ squeeze-and-excitation), then
    `1x1 -> GELU -> 1x1` at twice the input width, added to its input when the shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, height_stride: int, squeeze_excitation: bool):
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, stride=(height_stride, 1), padding=1, groups=in_channels
        )
        self.squeeze_excitation = SqueezeExcitation(in_channels) if squeeze_excitation else None
        self.expand = nn.Conv2d(in_channels, 2 * in_channels, 1)
        self.project = nn.Conv2d(2 * in_channels, out_channels, 1)
        self.residual = in_channels == out_channels and height_stride == 1

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = self.depthwise(hidden)
        if self.squeeze_excitation is not None:
            hidden = self.squeeze_excitation(hidden)
        mixed = self.project(F.gelu(self.expand(hidden)))
        return hidden + mixed if self.residual else mixed


class PPOCRBackbone(nn.Module):
    """PPLCNetV4: `(batch, 3, 48, W)` -> `(batch, channels, 1, W/8)`."""

    def __init__(self, config: PPOCRRecognizerConfig):
        super().__init__()
        self.stem = StemBlock(config)
        self.blocks = nn.ModuleList(LCNetV4Block(*block) for block in config.blocks)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.stem(pixels)
        for block in self.blocks:
            hidden = block(hidden)
        return F.avg_pool2d(hidden, (3, 2))


class SVTRAttention(nn.Module):
    """Multi-head self-attention over the sequence, queries, keys and values from one projection."""

    def __init__(self, config: PPOCRRecognizerConfig):
        super().__init__()
        hidden_size = config.neck_hidden_size
        self.num_heads = config.neck_num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, length, hidden_size = hidden.shape
        qkv = self.qkv(hidden).view(batch, length, 3, self.num_heads, hidden_size // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(query, key, value)
        return self.proj(attended.transpose(1, 2).reshape(batch, length, hidden_size))


class SVTRLayer(nn.Module):
    """A pre-norm transformer layer: `x + Attn(LN(x))`, then `x + MLP(LN(x))` with a SiLU MLP."""

    def __init__(self, config: PPOCRRecognizerConfig):
        super().__init__()
        hidden_size = config.neck_hidden_size
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-5)
        self.attention = SVTRAttention(config)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-5)
        self.fc1 = nn.Linear(hidden_size, int(hidden_size * config.neck_mlp_ratio))
        self.fc2 = nn.Linear(int(hidden_size * config.neck_mlp_ratio), hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.attention(self.norm1(hidden))
        return hidden + self.fc2(F.silu(self.fc1(self.norm2(hidden))))


class LightSVTRNeck(nn.Module):
    """`(batch, channels, 1, L)` backbone features -> `(batch, L, neck_hidden_size)` sequence features."""

    def __init__(self, config: PPOCRRecognizerConfig):
        super().__init__()
        in_channels, hidden_size = config.blocks[-1][1], config.neck_hidden_size
        self.skip = nn.Conv2d(in_channels, hidden_size, 1)
        self.reduce = nn.Conv2d(in_channels, hidden_size, 1)
        self.local = nn.Conv2d(
            hidden_size,
            hidden_size,
            (1, config.neck_kernel_size),
            padding=(0, config.neck_kernel_size // 2),
            groups=hidden_size,
        )
        self.layers = nn.ModuleList(SVTRLayer(config) for _ in range(config.neck_num_layers))
        self.norm = nn.LayerNorm(hidden_size, eps=1e-6)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        skip = F.silu(self.skip(features))
        hidden = F.silu(self.reduce(features))
        hidden = hidden + F.silu(self.local(hidden))
        sequence = hidden.flatten(2).transpose(1, 2)
        for layer in self.layers:
            sequence = layer(sequence)
        return self.norm(sequence) + skip.flatten(2).transpose(1, 2)


class PPOCREncoder(nn.Module):
    """Backbone and neck: `(batch, 3, 48, W)` BGR pixels in [-1, 1] -> `(batch, W/8, neck_hidden_size)`."""

    def __init__(self, config: PPOCRRecognizerConfig):
        super().__init__()
        self.config = config
        self.backbone = PPOCRBackbone(config)
        self.neck = LightSVTRNeck(config)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dim() != 4 or pixels.shape[1] != 3 or pixels.shape[2] != self.config.image_height:
            raise ValueError(
                f"The PP-OCR encoder reads (batch, 3, {self.config.image_height}, width) images; got shape "
                f"{tuple(pixels.shape)}."
            )
        if pixels.shape[3] < 8:
            raise ValueError(f"The PP-OCR encoder needs images at least 8 pixels wide; got {pixels.shape[3]}.")
        # Channels-last convolutions: ~1.5x faster forward (batch of 48 plates, 48x192, on a CPU), the same values.
        return self.neck(self.backbone(pixels.contiguous(memory_format=torch.channels_last)))


class PPOCRRecognizer(nn.Module):
    """Encoder and CTC head: `(batch, 3, 48, W)` -> `(batch, W/8, vocab_size)` logits (their softmax is what the ONNX
    export outputs). [`ctc_greedy_decode`] reads them with the model's dictionary."""

    def __init__(self, config: PPOCRRecognizerConfig | None = None):
        super().__init__()
        self.config = config or PPOCRRecognizerConfig()
        self.encoder = PPOCREncoder(self.config)
        self.head = nn.Linear(self.config.neck_hidden_size, self.config.vocab_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(pixels))


def ctc_greedy_decode(logits: torch.Tensor, characters: list[str]) -> list[str]:
    """Best-path CTC decoding of `(batch, L, 1 + len(characters) + 1)` logits: repeats merged, blanks dropped.

    Args:
        characters: the dictionary, without the blank (class 0) and the space (the last class), which are added here.
    """
    classes = ["", *characters, " "]
    if logits.shape[-1] != len(classes):
        raise ValueError(
            f"The logits have {logits.shape[-1]} classes but the dictionary gives {len(classes)} (blank + "
            f"{len(characters)} characters + space)."
        )
    texts = []
    for best in logits.argmax(dim=-1).tolist():
        kept = [index for position, index in enumerate(best) if position == 0 or index != best[position - 1]]
        texts.append("".join(classes[index] for index in kept))
    return texts


__all__ = [
    "PPOCR_V6_SMALL_BLOCKS",
    "PPOCRRecognizerConfig",
    "PPOCRBackbone",
    "LightSVTRNeck",
    "PPOCREncoder",
    "PPOCRRecognizer",
    "ctc_greedy_decode",
]
