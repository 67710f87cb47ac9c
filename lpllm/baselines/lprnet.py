"""LPRNet (Zherzdev & Gruzdev, 2018): a segmentation-free, recurrence-free plate reader for 94x24 crops. Small basic
blocks extract features, a wide (13x1) convolution scores 18 horizontal steps, and a global context of pooled
features from several depths is concatenated before the final 1x1 scoring, trained with CTC."""

import torch
from torch import nn
from torch.nn import functional as F


class SmallBasicBlock(nn.Module):
    """1x1 squeeze, 3x1 and 1x3 convolutions, 1x1 expand: a cheap 3x3 receptive field."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        middle = out_channels // 4
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, middle, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(middle, middle, (3, 1), padding=(1, 0)),
            nn.ReLU(inplace=True),
            nn.Conv2d(middle, middle, (1, 3), padding=(0, 1)),
            nn.ReLU(inplace=True),
            nn.Conv2d(middle, out_channels, 1),
        )

    def forward(self, inputs):
        return self.block(inputs)


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class LPRNet(nn.Module):
    """`(batch, 3, 24, 94)` images -> `(batch, 18, num_classes)` CTC scores.

    Args:
        num_classes: CTC classes, blank included.
        dropout: dropout before the wide convolutions.
    """

    input_size = (24, 94)  # (height, width)

    def __init__(self, num_classes: int, dropout: float = 0.3):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 64, 3), *_bn_relu(64))  # 22 x 92
        self.stage2 = nn.Sequential(
            nn.MaxPool2d(3, stride=1),
            SmallBasicBlock(64, 128),
            *_bn_relu(128),  # 20 x 90
        )
        self.stage3 = nn.Sequential(
            nn.MaxPool2d(3, stride=(1, 2)),  # 18 x 44
            SmallBasicBlock(128, 256),
            *_bn_relu(256),
            SmallBasicBlock(256, 256),
            *_bn_relu(256),
        )
        self.stage4 = nn.Sequential(
            nn.MaxPool2d(3, stride=(1, 2)),
            nn.Conv2d(256, 64, 1),
            *_bn_relu(64),  # 16 x 21
            nn.Dropout(dropout),
            nn.Conv2d(64, 256, (1, 4)),
            *_bn_relu(256),  # 16 x 18
            nn.Dropout(dropout),
            nn.Conv2d(256, num_classes, (13, 1)),
            *_bn_relu(num_classes),  # 4 x 18
        )
        context_channels = 3 + 64 + 128 + 256 + num_classes
        self.container = nn.Conv2d(context_channels, num_classes, 1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        stage1 = self.stage1(pixel_values)
        stage2 = self.stage2(stage1)
        stage3 = self.stage3(stage2)
        logits = self.stage4(stage3)
        # Global context: every depth pooled to the 4 x 18 score grid and scaled to a comparable magnitude.
        context = []
        for feature in (pixel_values, stage1, stage2, stage3, logits):
            pooled = F.adaptive_avg_pool2d(feature, logits.shape[-2:])
            context.append(pooled / pooled.pow(2).mean().sqrt().clamp_min(1e-6))
        scores = self.container(torch.cat(context, dim=1))
        return scores.mean(dim=2).transpose(1, 2)  # (batch, 18, classes)


__all__ = ["LPRNet"]
