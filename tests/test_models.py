"""qhelpers.models: shapes, the article's architecture, and the quantization-ready twin."""

from __future__ import annotations

import pytest
import torch
from torch.ao.quantization import fuse_modules

from qhelpers.models import FUSE_PATTERNS, QuantReadyCNN, SimpleCNN, resnet18_imagenet, resnet18_mnist


def test_simple_cnn_is_the_articles_network():
    m = SimpleCNN()
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "conv1.weight": (10, 1, 5, 5), "conv1.bias": (10,),
        "conv2.weight": (20, 10, 5, 5), "conv2.bias": (20,),
        "fc1.weight": (50, 320), "fc1.bias": (50,),
        "fc2.weight": (10, 50), "fc2.bias": (10,),
    }
    assert sum(p.numel() for p in m.parameters()) == 21840
    out = m(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(4), atol=1e-5)  # log_softmax output


def test_quant_ready_cnn_loads_the_same_weights_and_predicts_the_same():
    torch.manual_seed(0)
    simple = SimpleCNN().eval()
    ready = QuantReadyCNN.from_simple_cnn(simple).eval()
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(torch.log_softmax(ready(x), 1), simple(x), atol=1e-5)
    fused = fuse_modules(ready, FUSE_PATTERNS)
    assert type(fused.conv1).__name__ == "ConvReLU2d" and type(fused.fc1).__name__ == "LinearReLU"
    with torch.no_grad():
        assert torch.allclose(fused(x), ready(x), atol=1e-5)


def test_resnet18_mnist_shapes():
    m = resnet18_mnist().eval()
    assert m.conv1.in_channels == 1 and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, torch.nn.Identity)
    with torch.no_grad():
        assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert hasattr(m, "fuse_model")


def test_resnet18_imagenet_random_init():
    m = resnet18_imagenet("none").eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    with pytest.raises(ValueError, match="choose 'none'"):
        resnet18_imagenet("pretrained")  # type: ignore[arg-type]
