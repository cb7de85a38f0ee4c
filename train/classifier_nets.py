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


class ConvGroup(nn.Sequential):
    """conv -> 2x2 max-pool -> BN -> GELU -> conv -> BN -> GELU; the pool comes early to save FLOPs."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            dirac_conv(c_in, c_out),
            nn.MaxPool2d(2),
            scale_free_bn(c_out),
            nn.GELU(),
            dirac_conv(c_out, c_out),
            scale_free_bn(c_out),
            nn.GELU(),
        )


def scale_free_bn(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with its scale frozen at 1: only the shift learns (the following conv can scale freely).
    Running statistics follow fast (momentum 0.4): a short, high-LR run moves the weights quickly."""
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    bn.weight.requires_grad_(False)
    return bn


def dirac_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """3x3 conv whose first `c_in` filters start as the identity: the deep plain stack starts near a
    shallow one, which lets it take the high learning rate from the first steps."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


class WhitenedCNN(nn.Module):
    """The airbench94 design (Jordan 2024): a frozen 2x2 patch-whitening conv, then three conv groups.

    ~2 M parameters and ~0.12 G multiply-adds per image at the default widths (a third of ResNet-9's).
    The whitening filters are the eigenvectors of the 2x2x3 patch covariance of the
    training images (both signs), scaled to unit variance; call `init_whitening` once before training.
    """

    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256), num_classes: int = 10, out_scale: float = 1 / 9):
        super().__init__()
        whiten_channels = 2 * 3 * 2 * 2
        self.whiten = nn.Conv2d(3, whiten_channels, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        w1, w2, w3 = widths
        self.body = nn.Sequential(
            nn.GELU(),
            ConvGroup(whiten_channels, w1),  # 31 -> 15
            ConvGroup(w1, w2),  # -> 7
            ConvGroup(w2, w3),  # -> 3
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(w3, num_classes, bias=False),
        )
        self.out_scale = out_scale

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from (normalised) training images (N, 3, H, W)."""
        k = self.whiten.kernel_size
        patches = images.float().unfold(2, k[0], 1).unfold(3, k[1], 1)  # N, C, H', W', kh, kw
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * k[0] * k[1]).double()
        patches = patches - patches.mean(0)
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigenvectors.T / (eigenvalues + eps).sqrt()[:, None]).reshape(-1, 3, *k)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.whiten(x)) * self.out_scale


ARCHITECTURES = {"mnist_cnn": MnistCNN, "whitened_cnn": WhitenedCNN}


def build(arch: str, **kwargs) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown classifier architecture {arch!r}: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)
