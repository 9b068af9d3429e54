"""Segmentation heads on the encoder's four taps: the paper's UPerNet (through the 4/2/1/0.5 neck) and a light
per-token MLP with learned upsampling for fast CPU work. Both return logits at the input's pixel resolution."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import EngineError
from ..core.vocabulary import HEADS


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class LightHead(nn.Module):
    """Per-token MLP on the concatenated taps, then a learned k× upsampling and a 3×3 pixel-level conv.

    The transposed conv turns each token into its k×k pixels, so sub-patch detail the token encodes survives;
    the 3×3 conv lets neighbouring patches agree at their borders.
    """

    def __init__(self, embed_dim: int, n_taps: int, num_classes: int, patch_size: int, hidden: int = 256,
                 pixel_dim: int = 64):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim * n_taps)
        self.mlp = nn.Sequential(nn.Linear(embed_dim * n_taps, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.upsample = nn.ConvTranspose2d(hidden, pixel_dim, patch_size, stride=patch_size)
        self.act = nn.GELU()
        self.classifier = nn.Conv2d(pixel_dim, num_classes, 3, padding=1)

    def forward(self, taps: list[torch.Tensor], out_hw: tuple[int, int]) -> torch.Tensor:
        x = torch.cat(taps, dim=1)  # [B, 4E, h, w]
        B, _, h, w = x.shape
        x = self.mlp(self.norm(x.flatten(2).transpose(1, 2)))  # [B, h·w, hidden]
        x = self.act(self.upsample(x.transpose(1, 2).reshape(B, -1, h, w)))
        x = self.classifier(x)
        return x if x.shape[-2:] == out_hw else F.interpolate(x, out_hw, mode="bilinear", align_corners=False)


class MultiLevelNeck(nn.Module):
    """Rescales the four same-size ViT taps by 4, 2, 1 and 0.5 into a feature pyramid (as in the paper)."""

    def __init__(self, embed_dim: int):
        super().__init__()
        E = embed_dim
        self.up4 = nn.Sequential(nn.ConvTranspose2d(E, E, 2, stride=2), nn.BatchNorm2d(E), nn.GELU(),
                                 nn.ConvTranspose2d(E, E, 2, stride=2))
        self.up2 = nn.ConvTranspose2d(E, E, 2, stride=2)
        self.down2 = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, taps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.up4(taps[0]), self.up2(taps[1]), taps[2], self.down2(taps[3])]


class PyramidPooling(nn.Module):
    """UPerNet's pyramid pooling on the coarsest level (bins 1, 2, 3, 6)."""

    def __init__(self, c_in: int, channels: int, bins=(1, 2, 3, 6)):
        super().__init__()
        # No norm in the pooled branches: a 1×1 bin with a batch of one has no variance to normalise.
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(c_in, channels, 1),
                                                  nn.ReLU(inplace=True)) for b in bins)
        self.bottleneck = conv_bn_relu(c_in + len(bins) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(s(x), size, mode="bilinear", align_corners=False) for s in self.stages]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UPerHead(nn.Module):
    """UPerNet (Xiao et al. 2018): pyramid pooling on the coarsest level, FPN top-down, fused, classified."""

    def __init__(self, embed_dim: int, num_classes: int, channels: int = 256, dropout: float = 0.1):
        super().__init__()
        self.neck = MultiLevelNeck(embed_dim)
        self.ppm = PyramidPooling(embed_dim, channels)
        self.lateral = nn.ModuleList(conv_bn_relu(embed_dim, channels) for _ in range(3))
        self.fpn = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in range(3))
        self.fuse = conv_bn_relu(4 * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, taps: list[torch.Tensor], out_hw: tuple[int, int]) -> torch.Tensor:
        levels = self.neck(taps)
        lat = [conv(f) for conv, f in zip(self.lateral, levels[:3])] + [self.ppm(levels[3])]
        for i in range(3, 0, -1):  # top-down
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], lat[i - 1].shape[-2:], mode="bilinear",
                                                    align_corners=False)
        outs = [conv(f) for conv, f in zip(self.fpn, lat[:3])] + [lat[3]]
        size = outs[0].shape[-2:]
        fused = self.fuse(torch.cat([outs[0]] + [F.interpolate(o, size, mode="bilinear", align_corners=False)
                                                 for o in outs[1:]], dim=1))
        logits = self.classifier(self.dropout(fused))
        return F.interpolate(logits, out_hw, mode="bilinear", align_corners=False)



def build_head(kind: str, embed_dim: int, n_taps: int, num_classes: int, patch_size: int) -> nn.Module:
    if kind == "light":
        return LightHead(embed_dim, n_taps, num_classes, patch_size)
    if kind == "upernet":
        if n_taps != 4:
            raise EngineError(f"the UPerNet head needs 4 feature taps; this encoder gives {n_taps}")
        return UPerHead(embed_dim, num_classes, channels=min(256, max(64, embed_dim // 2)))
    raise EngineError(f"unknown head {kind!r}: use one of {', '.join(HEADS)}")
