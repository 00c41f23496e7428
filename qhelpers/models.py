"""The course's models: the article's SimpleCNN, its quantization-ready twin, an MLP, and ResNet-18.

``SimpleCNN`` is the source article's network as written (functional ReLU
and pooling, ``log_softmax`` output). Eager-mode static quantization needs
more than that: the points where tensors enter and leave the quantized region
marked with ``QuantStub``/``DeQuantStub``, and ReLUs as modules so that
``conv+relu`` and ``linear+relu`` can be fused. ``QuantReadyCNN`` is that
model; it has the same parameter names, so it loads SimpleCNN's weights.

``MLP`` is the Linear-heavy network dynamic quantization is made for.
``resnet18_mnist`` is torchvision's ResNet-18 with a small-image stem;
``load_resnet18`` gives the ImageNet one with torchvision's pretrained
weights (from its cache), and ``plain_resnet`` a plain twin of a
quantizable ResNet for FX and PT2E. Trained copies come from :mod:`qhelpers.course.zoo`.

Constructors check their arguments (``num_classes`` a positive int, known
``stem``/``weights`` names, bools for flags) and raise a ValueError or
TypeError naming the bad one.
"""

from __future__ import annotations

import copy
import numbers
from pathlib import Path
from typing import Iterable, Literal
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub
from torchvision import models as tv_models

from .checks import check_flag, check_float_model, check_int

__all__ = [
    "SimpleCNN", "QuantReadyCNN", "FUSE_PATTERNS", "MLP", "resnet18_mnist", "resnet18_mnist_plain", "resnet18_imagenet",
    "WeightsUnavailableError", "checkpoint_path", "load_resnet18", "plain_resnet",
]

IMAGENET_WEIGHTS = tv_models.ResNet18_Weights.IMAGENET1K_V1


def _check_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"num_classes={num_classes!r} must be an int, not {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be at least 1 (10 for MNIST)")
    return int(num_classes)


class SimpleCNN(nn.Module):
    """The article's CNN for 1x28x28 images: conv 1->10 k5, conv 10->20 k5, fc 320->50, fc 50->10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        _check_classes(num_classes)
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class QuantReadyCNN(nn.Module):
    """SimpleCNN prepared for eager-mode quantization; same parameter names, same function.

    The output is the logits: ``log_softmax`` is monotonic, so predictions are
    unchanged, and it stays outside the quantized region (after ``dequant``).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        _check_classes(num_classes)
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(320, 50)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(50, num_classes)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu3(self.fc1(x))
        x = self.fc2(x)
        return self.dequant(x)

    @classmethod
    def from_simple_cnn(cls, model: SimpleCNN) -> "QuantReadyCNN":
        """A QuantReadyCNN carrying a copy of ``model``'s trained weights."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a SimpleCNN, not {type(model).__name__}")
        fc2 = getattr(model, "fc2", None)
        if not isinstance(fc2, nn.Linear) or type(fc2).__module__.startswith("torch.ao"):
            found = f"its fc2 is a {fc2._get_name()} (already quantized?)" if isinstance(fc2, nn.Module) else "it has no fc2 layer"
            raise ValueError(f"model must be a float SimpleCNN, but {found}: pass the SimpleCNN the weights come from")
        ready = cls(num_classes=fc2.out_features)
        try:
            ready.load_state_dict(model.state_dict())
        except RuntimeError as exc:  # "Error(s) in loading state_dict for ...:\n\tMissing key(s) ..."
            detail = str(exc).strip().splitlines()[-1].strip()[:200]
            raise ValueError(f"the {type(model).__name__}'s weights do not fit a QuantReadyCNN ({detail}): "
                             "pass a SimpleCNN") from None
        return ready


# Module groups that torch.ao.quantization.fuse_modules fuses in QuantReadyCNN.
FUSE_PATTERNS: list[list[str]] = [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]]


class MLP(nn.Module):
    """A Linear-heavy classifier for 1x28x28 images: 784 -> 512 -> 256 -> 10 with ReLUs (535,818 parameters).

    Dynamic quantization only touches ``nn.Linear``; in SimpleCNN those are
    2 % of the compute, here they are all of it.
    """

    def __init__(self, hidden: tuple[int, ...] = (512, 256), num_classes: int = 10) -> None:
        super().__init__()
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Iterable):
            raise TypeError(f"hidden must be a tuple of layer widths, e.g. (512, 256), not {type(hidden).__name__} {hidden!r}")
        hidden = tuple(hidden)
        for i, h in enumerate(hidden):
            check_int(f"hidden[{i}]", h, 1)
        check_int("num_classes", num_classes, 1)
        layers: list[nn.Module] = [nn.Flatten()]
        width = 28 * 28
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def resnet18_mnist(num_classes: int = 10, stem: Literal["small", "small_pool"] = "small") -> nn.Module:
    """torchvision's ResNet-18 adapted to 1x28x28 images.

    The ImageNet stem (7x7 stride-2 conv, then max-pool) would shrink a 28x28
    digit to 7x7 before the first residual block. The small-image stem used
    for CIFAR-style inputs keeps the resolution: a 3x3 stride-1 conv with one
    input channel and no max-pool, so the blocks see 28 -> 14 -> 7 -> 4
    (``stem="small"``). ``stem="small_pool"`` keeps the 3x3 stride-2 max-pool
    after that conv: the blocks see 14 -> 7 -> 4 -> 2, four times fewer
    multiply-adds (0.12 GMAC per image instead of 0.46), which is what
    makes training on 2 CPU cores affordable; a 28x28 digit loses nothing.
    The model is torchvision's quantizable ResNet-18 (``QuantizableResNet``),
    so it has ``fuse_model`` and quant/dequant stubs for eager quantization,
    and behaves as a plain float model until prepared.
    """
    if stem not in ("small", "small_pool"):
        raise ValueError(f"unknown stem {stem!r}; choose 'small' (no max-pool) or 'small_pool'")
    _check_classes(num_classes)
    from torchvision.models.quantization import resnet18 as q_resnet18

    model = q_resnet18(weights=None, quantize=False, num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
    if stem == "small":
        model.maxpool = nn.Identity()
    return model


def resnet18_mnist_plain(num_classes: int = 10, stem: Literal["small", "small_pool"] = "small") -> nn.Module:
    """:func:`resnet18_mnist` as a plain torchvision ``ResNet`` (no stubs, no ``FloatFunctional``): what FX and
    PT2E trace (:func:`plain_resnet` of it), importable by name so that a fresh process can rebuild it."""
    return plain_resnet(resnet18_mnist(num_classes, stem))


def resnet18_imagenet(weights: Literal["none", "imagenet"] = "imagenet", quantizable: bool = True) -> nn.Module:
    """ResNet-18 for 3x224x224 ImageNet images, with torchvision's ``IMAGENET1K_V1`` weights.

    The weights come from ``$TORCH_HOME/hub/checkpoints/`` (downloaded there by
    torchvision if absent and online). ``quantizable=True`` returns
    torchvision's quantizable variant (``fuse_model``, stubs) with the same weights.
    """
    if weights not in ("none", "imagenet"):
        raise ValueError(f"weights={weights!r}: choose 'none' (random init) or 'imagenet'")
    check_flag("quantizable", quantizable)
    enum = IMAGENET_WEIGHTS if weights == "imagenet" else None
    if quantizable:
        from torchvision.models.quantization import resnet18 as q_resnet18

        return q_resnet18(weights=enum, quantize=False)
    return tv_models.resnet18(weights=enum)


class WeightsUnavailableError(FileNotFoundError):
    """The pretrained checkpoint is not in torchvision's cache and may not be downloaded."""


def checkpoint_path() -> Path:
    """Where torchvision keeps the IMAGENET1K_V1 checkpoint: ``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(IMAGENET_WEIGHTS.url).path).name


def load_resnet18(weights: str = "imagenet", *, quantizable: bool = True, allow_download: bool = False) -> nn.Module:
    """ResNet-18 with ImageNet weights (``"imagenet"``) or random ones (``"none"``), in eval mode.

    Without ``allow_download`` the checkpoint must already be in torchvision's
    cache (:func:`checkpoint_path`); otherwise a :class:`WeightsUnavailableError`
    says where to put it, instead of a network error deep inside torch.hub.
    ``quantizable=True`` gives torchvision's ``QuantizableResNet`` (stubs,
    ``fuse_model``) for eager mode; ``False`` the plain ``ResNet`` (for FX, PT2E).
    """
    if weights not in ("none", "imagenet"):
        raise ValueError(f"weights={weights!r}: choose 'none' (random init) or 'imagenet'")
    check_flag("quantizable", quantizable)
    check_flag("allow_download", allow_download)
    path = checkpoint_path()
    if weights == "imagenet" and not allow_download and not path.is_file():
        raise WeightsUnavailableError(
            f"ResNet-18 ImageNet weights not found at {path}. Copy {IMAGENET_WEIGHTS.url} there (or set TORCH_HOME to a "
            "folder whose hub/checkpoints/ holds it), or run with weights='none' to train ResNet-18 on MNIST instead."
        )
    return resnet18_imagenet(weights, quantizable=quantizable).eval()  # type: ignore[arg-type]


def plain_resnet(model: nn.Module) -> nn.Module:
    """A plain torchvision ``ResNet`` computing the same function as a ``QuantizableResNet`` (same weights).

    FX and PT2E trace the model themselves and need neither stubs nor
    ``FloatFunctional``; they get this twin. The stem (``conv1``, ``maxpool``)
    and the classifier size are copied, so it works for the MNIST variant too.
    """
    check_float_model(model)
    if not all(isinstance(getattr(model, name, None), kind) for name, kind in
               (("conv1", nn.Conv2d), ("maxpool", nn.Module), ("fc", nn.Linear))):
        raise TypeError(f"plain_resnet needs a torchvision ResNet-18 (e.g. from load_resnet18 or resnet18_mnist), "
                        f"not a {type(model).__name__}")
    plain = tv_models.resnet18(weights=None, num_classes=model.fc.out_features)
    plain.conv1 = copy.deepcopy(model.conv1)
    plain.maxpool = copy.deepcopy(model.maxpool)
    try:
        plain.load_state_dict(model.state_dict())
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise ValueError(f"the {type(model).__name__}'s weights do not fit a ResNet-18 "
                         f"({(lines[1] if len(lines) > 1 else lines[0]).strip()[:200]}): pass a ResNet-18") from None
    return plain.eval()
