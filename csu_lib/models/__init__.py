"""Backbones. Every model takes log-mel features (B, n_mels, T) in dB and returns logits
(B, n_classes) -- never probabilities.

Models register themselves by name (:func:`~.registry.register_model`, into :data:`MODELS`);
:func:`build_model` builds one from a :class:`~csu_lib.config.ModelConfig`. Every constructor has the signature
``Model(n_classes, n_mels=64, width=1.0, dropout=0.2, **extra_keyword_defaults)`` and every
model accepts any number of frames T >= 32 and n_mels in {64, 128}.

=============== ==================================================================================
name            architecture
=============== ==================================================================================
``small_cnn``   ~100k-parameter PANNs-like CNN for the 2-core CPU
``cnn6``        PANNs CNN6: 4 blocks of one 5x5 conv (64-128-256-512 x width)
``cnn10``       PANNs CNN10: 4 blocks of two 3x3 convs (64-128-256-512 x width)
``cnn14``       PANNs CNN14: 6 blocks of two 3x3 convs (64-...-2048 x width); 80.75M at width 1
``resnet22``    PANNs ResNet22: conv stem, basic-block stages [2, 2, 2, 2], 2048-channel conv block
``resnet38``    PANNs ResNet38: the same with stages [3, 4, 6, 3]
``mobilenetv2`` MobileNetV2 with decision-level mean pooling (pseudo-strong-label student)
``transformer`` small AST-like spectrogram transformer (patch embedding, CLS token, 4 layers)
=============== ==================================================================================

What ``width`` and ``dropout`` mean per family:

* PANNs CNNs / ResNets: ``width`` multiplies every channel count (embedding size included);
  ``dropout`` is the dropout between conv blocks (PANNs: 0.2). The head dropout before ``fc1`` is
  fixed at 0.5 (``head_dropout``), and the ResNet basic blocks' inner dropout at 0.1, as in PANNs.
* MobileNetV2: ``width`` is the usual width multiplier (channels rounded to multiples of 8, the
  1280-channel last layer is only widened, never narrowed); ``dropout`` is the dropout before the
  frame-wise classifier (the PSL code uses 0.3).
* Transformer: ``width`` scales ``embed_dim = 192 * width`` (rounded to a multiple of ``heads``);
  ``dropout`` is used inside the encoder layers and after the positional embedding.

:data:`DEFAULT_WIDTH` gives a CPU-friendly width per model; :func:`model_summary` tabulates the
parameter counts at that width and at full width.
"""
# the backbone modules register themselves on import, in this order (the order of MODELS)
from .small_cnn import PooledCNN, SmallCNN  # noqa: I001
from .panns import Cnn6, Cnn10, Cnn14, ResNet22, ResNet38
from .mobilenet import MobileNetV2
from .transformer import SpectrogramTransformer
from .registry import (DEFAULT_WIDTH, MODELS, build_model, count_parameters, model_summary, multiply_adds,
                       register_model)

__all__ = ["DEFAULT_WIDTH", "MODELS", "Cnn6", "Cnn10", "Cnn14", "MobileNetV2", "ResNet22", "ResNet38", "PooledCNN", "SmallCNN",
           "SpectrogramTransformer", "build_model", "count_parameters", "model_summary", "multiply_adds",
           "register_model"]
