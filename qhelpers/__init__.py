"""qhelpers: the helper package behind the qcourse notebooks, one module per concept.

The teaching modules, from the bottom layer up (a module imports only from its own layer or below;
see ARCHITECTURE.md), each reading top-down as its lesson does:

- base: ``checks`` (argument checks), ``hardware`` (what the CPU and its kernels can do);
- math: ``quant`` (affine quantization), ``ranges`` (clipping ranges), ``formats`` (number formats),
  ``packing`` (2/3/4-bit codes packed into bytes);
- data and models: ``data`` (splits, loaders, calibration batches, character vocabularies, ImageNet
  folders), ``models`` (SimpleCNN, MLP, ResNet-18), ``transformer`` (a nanoGPT-style character model);
- training: ``train`` (``fit``, ``fit_lm``, ``evaluate``, ``TrainConfig``);
- quantization: ``ptq`` (eager, FX, PT2E), ``qat`` (fake quantization, low-bit, QAT), ``convert``
  (FP16/BF16 casts, dynamic INT8), ``sensitivity``, ``weight_only`` (group-wise W8A16/W4A16),
  ``codebook`` (k-means codebooks), ``activations`` (captured inputs, outlier channels),
  ``activation_aware`` (AWQ-style scaling), ``smoothing`` (SmoothQuant), ``gptq`` (GPTQ's error feedback);
- measurement: ``bench`` (size, storage, latency), ``plots``, ``fidelity`` (KL divergence and top-1 agreement
  of a quantized language model with its original), ``roofline`` (bandwidth, caches, bytes per token, the
  memory roofline of batch-1 decoding, the CPU weight-only paths);
- deployment: ``serialization`` (saving, reloading in a fresh process), ``runtimes`` (ONNX Runtime, ExecuTorch).

The course machinery lives in the sub-package ``qhelpers.course`` (the book runner, ``record``/``claim``,
``setup``, exercises and their solutions, data fetching, the checkpoint cache and the trained-model zoo);
the teaching modules never import it, so they read without it.
"""

__version__ = "0.1.0"
