"""Classifier architectures, built by name so a saved classifier can be rebuilt from its JSON config."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class MnistCNN(nn.Module):
    """Two conv blocks + MLP head, ~0.4 M parameters: > 99.3% on MNIST in a few CPU minutes."""

    def __init__(self, width: int = 32, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(1, width, 5),
            nn.MaxPool2d(2),  # 14x14
            conv_bn(width, 2 * width, 5),
            nn.MaxPool2d(2),  # 7x7
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(2 * width * 49, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.25),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """The DAWNBench ResNet-9 (Page 2018), the ancestor of airbench: ~94% on CIFAR-10 in ~25 epochs."""

    def __init__(self, width: int = 64, num_classes: int = 10, out_scale: float = 0.125):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            conv_bn(3, w),
            conv_bn(w, 2 * w),
            nn.MaxPool2d(2),
            Residual(2 * w),  # 16x16
            conv_bn(2 * w, 4 * w),
            nn.MaxPool2d(2),  # 8x8
            conv_bn(4 * w, 8 * w),
            nn.MaxPool2d(2),
            Residual(8 * w),  # 4x4
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(8 * w, num_classes, bias=False),
        )
        self.out_scale = out_scale  # keeps initial logits small, which the one-cycle SGD recipe relies on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.out_scale


ARCHITECTURES = {"mnist_cnn": MnistCNN, "resnet9": ResNet9}


def build(arch: str, **kwargs) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown classifier architecture {arch!r}: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)
