"""Feature networks F: (B, 4, H, W) normalised RGB-D in, (B, C, H, W) guide features out.

Architectures (``ARCHITECTURES``):

* ``resnet50-unet`` -- the paper's network: the input is upsampled x2 (bicubic), a U-Net with a
  ResNet-50 encoder (torchvision layout, so ImageNet weights load from a local torchvision
  state_dict file) and decoder channels 256/128/64/32/16 with batch norm maps it to C features,
  a 3x3 head without activation, and a 2x2 average pool brings it back to (H, W).
* ``lite-unet`` -- the small network (real time on a CPU; ``lite-unet-q`` below ships): a five-level U-Net that
  runs at HALF resolution and predicts, per feature channel, a gate g and a residual r; a cheap
  full-resolution branch adds pixel-sharp local terms. The features are

      f = tile(base) * (1 + up(g)) + up(r) + local

  where ``base`` are the learning-free features of the authors' code (ImageNet RGB and depth),
  tiled C/4 times. The last layers start at zero, so an untrained ``lite-unet`` reproduces
  DADA-free exactly (same c(x), same kappa) and training only has to learn corrections: close
  gates on texture edges that are not depth edges, open residuals where depth steps without a
  colour edge. With ``scale_film`` each decoder level is also modulated by the resolution ratio
  (FiLM: per-channel scale and shift from log2(ratio)), so one model can weigh colour and depth
  cues differently at x4 and x16; zero-initialised, it starts as the unconditioned model.

``lite-unet-fr`` runs the first level at full resolution, ``lite-unet-q`` the whole U-Net at a
quarter of it (its gates and residuals are upsampled x4: about half of ``lite-unet``'s time at
640x480, 19 against 38 ms on one thread, the full-resolution part unchanged; coarser gates).

Both pad the input to a multiple of their total stride (reflection) and crop the output back, so
any H, W works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fused_head import full_res_output, fused_head_applies

ARCHITECTURES = ("lite-unet", "lite-unet-fr", "lite-unet-q", "resnet50-unet")


def pad_plan(H: int, W: int, multiple: int) -> tuple[int, int, str]:
    """Rows and columns appended (at the bottom and right) to reach a multiple of ``multiple``, and
    the padding mode: reflection where the image is larger than the padding, else replication."""
    ph, pw = (-H) % multiple, (-W) % multiple
    return ph, pw, "reflect" if (ph < H and pw < W) else "replicate"


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    H, W = x.shape[-2:]
    ph, pw, mode = pad_plan(H, W, multiple)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (H, W)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


# ----------------------------------------------------------------------------- lite-unet
class LiteUNet(nn.Module):
    """Half-resolution U-Net with gated learning-free base features (see module docstring).

    Args:
        out_channels: C, a multiple of 4 (the base has 4 channels, tiled C/4 times).
        widths: channels of the 5 encoder levels (strides 2, 4, 8, 16, 32 w.r.t. the input).

    The U-Net runs in channels-last memory format (2-4x faster convolutions on CPU); everything
    at full resolution is a handful of element-wise passes over (B, C, H, W).
    """

    def __init__(self, out_channels: int = 8, widths: tuple[int, ...] = (16, 24, 40, 64, 64), in_channels: int = 4,
                 refine_width: int = 0, input_pool: int = 2, scale_film: bool = False):
        super().__init__()
        # input_pool 2: the U-Net runs at half resolution and its gates/residuals are upsampled;
        # 1: its first level is at full resolution (pixel-sharp gates, ~2x the cost); 4: at a
        # quarter (lite-unet-q, about half the half-resolution net's time at 640x480).
        if input_pool not in (1, 2, 4):
            raise ValueError(f"lite-unet input_pool must be 1, 2 or 4, got {input_pool}")
        self.input_pool = input_pool
        self.stride = input_pool * 2 ** (len(widths) - 1)
        if out_channels % 4:
            raise ValueError(f"lite-unet needs out_channels to be a multiple of 4, got {out_channels}")
        self.out_channels = out_channels
        w = list(widths)
        self.enc = nn.ModuleList([ConvBNReLU(in_channels, w[0])])
        for i in range(1, len(w)):
            self.enc.append(nn.Sequential(ConvBNReLU(w[i - 1], w[i], stride=2), ConvBNReLU(w[i], w[i])))
        # Decoder: lateral 1x1 of the coarser level, add the skip, one 3x3 conv.
        self.lat = nn.ModuleList([nn.Conv2d(w[i + 1], w[i], 1) for i in range(len(w) - 1)])
        self.dec = nn.ModuleList([ConvBNReLU(w[i], w[i]) for i in range(len(w) - 1)])
        self.head = nn.Conv2d(w[0], 2 * out_channels, 1)
        # Full resolution: a per-pixel linear mix of the input channels (e.g. chroma, depth) ...
        self.local = nn.Conv2d(in_channels, out_channels, 1)
        # ... and (refine_width > 0) one 3x3 layer on the input plus projected decoder context,
        # for pixel-sharp corrections where the half-resolution gates are too coarse.
        self.refine_width = refine_width
        zero = [self.head, self.local]
        # scale_film: the resolution ratio conditions each decoder level (FiLM: a per-channel
        # scale and shift from log2(ratio)), so one model can trust colour edges more where the
        # source says less (x16) and less where it says more (x4). Applied AFTER batch norm: a
        # constant input channel would be erased by it in training (one ratio per batch).
        self.scale_film = scale_film
        if scale_film:
            self.film = nn.ModuleList([nn.Linear(1, 2 * w[i]) for i in range(len(w) - 1)])
            zero.extend(self.film)
        if refine_width:
            self.proj = nn.Conv2d(w[0], refine_width, 1)
            self.refine = nn.Sequential(nn.Conv2d(in_channels + refine_width, refine_width, 3, padding=1),
                                        nn.ReLU(inplace=True), nn.Conv2d(refine_width, out_channels, 1))
            zero.append(self.refine[2])
        for m in zero:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, base: torch.Tensor, scale_code: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, 4, H, W) network input; base: (B, 4, H, W) learning-free features;
        scale_code: (B, 1) log2(ratio) - 3, needed with ``scale_film`` -> (B, C, H, W)."""
        B, _, H, W = x.shape
        xp, _ = _pad_to(x, self.stride)
        h = F.avg_pool2d(xp, self.input_pool) if self.input_pool > 1 else xp
        hd, d = self.trunk(h, scale_code)
        if self.input_pool > 1 and not self.refine_width and fused_head_applies(hd, x, base):
            # inference on the CPU: the last x2 upsampling and the sums below in one pass
            # (fused_head); a quarter-resolution head is first brought to half resolution
            half = self._upsample(hd, self.input_pool // 2).contiguous()
            return full_res_output(half, x, base, self.local.weight, self.local.bias)
        gr = self._full_res(hd)[..., :H, :W]
        if self.refine_width:
            ctx = self._full_res(self.proj(d).contiguous())
            fine = self.refine(torch.cat([x, ctx[..., :H, :W]], dim=1))
        k = self.out_channels // base.shape[1]
        g = gr[:, : self.out_channels].reshape(B, k, base.shape[1], H, W)
        r = gr[:, self.out_channels:].reshape(B, k, base.shape[1], H, W)
        b = base.unsqueeze(1)
        out = self.local(x).view(B, k, base.shape[1], H, W) + r + b
        out = (out + b * g).reshape(B, self.out_channels, H, W)
        return out + fine if self.refine_width else out

    def trunk(self, h: torch.Tensor, scale_code: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The U-Net on the pooled, padded input h (B, 4, H / pool, W / pool) -> (head output
        (B, 2C, ...): gates then residuals at the pooled resolution, the last decoder level)."""
        B = h.shape[0]
        if self.scale_film and (scale_code is None or scale_code.shape != (B, 1)):
            raise ValueError(f"this lite-unet is conditioned on the resolution ratio: pass scale_code of shape ({B}, 1)")
        h = h.contiguous(memory_format=torch.channels_last)
        skips = []
        for enc in self.enc:
            h = enc(h)
            skips.append(h)
        d = skips[-1]
        for i in range(len(self.dec) - 1, -1, -1):
            up = F.interpolate(self.lat[i](d), size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            d = self.dec[i](up + skips[i])
            if self.scale_film:
                gamma, beta = self.film[i](scale_code.to(d.dtype)).view(B, 2 * d.shape[1], 1, 1).chunk(2, dim=1)
                d = d * (1 + gamma) + beta
        return self.head(d).contiguous(), d

    def _full_res(self, t: torch.Tensor) -> torch.Tensor:
        return self._upsample(t, self.input_pool)

    @staticmethod
    def _upsample(t: torch.Tensor, factor: int) -> torch.Tensor:
        """Bilinear x``factor`` as repeated x2 steps (the fused output stage does the last x2, so
        the torch path and it compose the same steps)."""
        while factor > 1:
            t = F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)
            factor //= 2
        return t


# ----------------------------------------------------------------------------- resnet50-unet
class Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck (stride on the 3x3 conv), same attribute names."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + idt)


class ResNet50Encoder(nn.Module):
    """ResNet-50 trunk with torchvision's parameter names (``conv1``, ``bn1``, ``layer1..4``).

    ``forward`` returns the 5 feature maps a U-Net needs: strides 2 (64 ch), 4 (256), 8 (512),
    16 (1024), 32 (2048).
    """

    def __init__(self, in_channels: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes = 64
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        down = None
        if stride != 1 or self.inplanes != planes * 4:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                 nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, down)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.relu(self.bn1(self.conv1(x)))
        f2 = self.layer1(self.maxpool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer3(f3)
        f5 = self.layer4(f4)
        return [f1, f2, f3, f4, f5]


def load_torchvision_resnet50(encoder: ResNet50Encoder, state_dict: dict) -> list[str]:
    """Copy an ImageNet ResNet-50 state_dict (torchvision keys) into ``encoder``.

    The classifier (``fc.*``) is dropped. A 3-channel ``conv1`` is adapted to the encoder's input
    channels as segmentation_models_pytorch does: channel i takes the filter of RGB channel i % 3
    and all are scaled by 3 / in_channels (the 4th, depth, channel starts as a copy of R).

    Returns:
        the encoder keys that the file did not provide (empty for a complete file).
    Raises:
        ValueError: on a key the encoder does not have or a shape that cannot be adapted.
    """
    own = encoder.state_dict()
    new = {}
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        if key not in own:
            raise ValueError(f"unexpected key {key!r}: not a torchvision ResNet-50 state_dict")
        if key == "conv1.weight" and value.shape[1] != own[key].shape[1]:
            cin = own[key].shape[1]
            value = torch.stack([value[:, i % value.shape[1]] for i in range(cin)], dim=1) * (value.shape[1] / cin)
        if value.shape != own[key].shape:
            raise ValueError(f"{key}: shape {tuple(value.shape)} does not match {tuple(own[key].shape)}")
        new[key] = value
    missing = [k for k in own if k not in new]
    encoder.load_state_dict(new, strict=False)
    return missing


class DecoderBlock(nn.Module):
    """Nearest x2 upsampling, concatenation with the skip, two 3x3 conv-BN-ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv1 = ConvBNReLU(cin + cskip, cout)
        self.conv2 = ConvBNReLU(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class ResNet50UNet(nn.Module):
    """The paper's F: bicubic x2 -> U-Net(ResNet-50) -> 3x3 head -> 2x2 average pool."""

    stride = 16  # the U-Net sees the x2 input, which must split 5 times

    def __init__(self, out_channels: int = 64, decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
                 in_channels: int = 4):
        super().__init__()
        self.out_channels = out_channels
        self.encoder = ResNet50Encoder(in_channels)
        skips = [1024, 512, 256, 64, 0]
        cin = [2048] + list(decoder_channels[:-1])
        self.blocks = nn.ModuleList(
            [DecoderBlock(ci, cs, co) for ci, cs, co in zip(cin, skips, decoder_channels)]
        )
        self.head = nn.Conv2d(decoder_channels[-1], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        xp, (H, W) = _pad_to(x, self.stride)
        x2 = F.interpolate(xp, scale_factor=2, mode="bicubic", align_corners=False)
        f1, f2, f3, f4, f5 = self.encoder(x2)
        d = f5
        for block, skip in zip(self.blocks, [f4, f3, f2, f1, None]):
            d = block(d, skip)
        return F.avg_pool2d(self.head(d), 2)[..., :H, :W]


# lite-unet-fr: a full-resolution first level, then five stride-2 levels (total stride 32).
FR_WIDTHS = (12, 16, 24, 40, 64, 64)


LITE_WIDTHS = (16, 24, 40, 64, 64)


def build_network(architecture: str, channels: int, refine_width: int = 0,
                  widths: tuple[int, ...] | list[int] = (), scale_film: bool = False) -> nn.Module:
    """F for ``architecture``; ``widths`` overrides a lite U-Net's level widths (empty: default);
    ``scale_film`` conditions a lite U-Net on the resolution ratio."""
    if architecture == "lite-unet":
        return LiteUNet(out_channels=channels, widths=tuple(widths) or LITE_WIDTHS, refine_width=refine_width,
                        scale_film=scale_film)
    if architecture == "lite-unet-fr":
        return LiteUNet(out_channels=channels, widths=tuple(widths) or FR_WIDTHS, refine_width=refine_width,
                        input_pool=1, scale_film=scale_film)
    if architecture == "lite-unet-q":
        return LiteUNet(out_channels=channels, widths=tuple(widths) or LITE_WIDTHS, refine_width=refine_width,
                        input_pool=4, scale_film=scale_film)
    if scale_film:
        raise ValueError(f"scale_film applies to the lite U-Nets, not {architecture}")
    if architecture == "resnet50-unet":
        return ResNet50UNet(out_channels=channels)
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
