"""Exercise 2 (chapter 02): quantize every Linear layer but the last (the classifier) with torchao's dynamic INT8."""

import copy

from torch import nn
from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_


def quantize_all_but_last(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)  # quantize_ works in place: never touch the caller's model
    last = [name for name, mod in model.named_modules() if isinstance(mod, nn.Linear)][-1]
    quantize_(model, Int8DynamicActivationInt8WeightConfig(),
              filter_fn=lambda mod, fqn: isinstance(mod, nn.Linear) and fqn != last)
    return model
