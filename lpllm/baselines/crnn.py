"""CRNN (Shi et al., 2015) for plate crops: a small VGG-style CNN turns a 32x128 crop into a sequence of 32 column
features, a bidirectional LSTM reads them, and a linear layer scores each step for CTC."""

import torch
from torch import nn


def _conv(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class CRNN(nn.Module):
    """`(batch, 3, 32, 128)` images -> `(batch, 32, num_classes)` CTC scores.

    Args:
        num_classes: CTC classes, blank included.
        channels: widths of the four convolution stages.
        hidden_size: LSTM width per direction.
    """

    input_size = (32, 128)  # (height, width)

    def __init__(self, num_classes: int, channels: tuple[int, ...] = (32, 64, 128, 192), hidden_size: int = 128):
        super().__init__()
        c1, c2, c3, c4 = channels
        self.features = nn.Sequential(
            *_conv(3, c1),
            nn.MaxPool2d(2),  # 16 x 64
            *_conv(c1, c2),
            nn.MaxPool2d(2),  # 8 x 32
            *_conv(c2, c3),
            *_conv(c3, c3),
            nn.MaxPool2d((2, 1)),  # 4 x 32: keep width, it becomes time
            *_conv(c3, c4),
            nn.MaxPool2d((2, 1)),  # 2 x 32
            nn.Conv2d(c4, c4, (2, 1), bias=False),
            nn.BatchNorm2d(c4),
            nn.ReLU(inplace=True),  # 1 x 32
        )
        self.rnn = nn.LSTM(c4, hidden_size, num_layers=2, bidirectional=True, batch_first=True)
        self.classifier = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.features(pixel_values).squeeze(2).transpose(1, 2)  # (batch, width, channels)
        sequence, _ = self.rnn(features)
        return self.classifier(sequence)


__all__ = ["CRNN"]
