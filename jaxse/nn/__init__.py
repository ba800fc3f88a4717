"""The layer library of the models: complex products, time-valid convolutions, BatchNorms, PReLUs, LSTMs.

Every layer works on real (float32) or complex (complex64) arrays natively: parameters and activations of a complex
layer are complex64 (except where the mathematics is real: the 2x2 real whitening/scaling matrix of complex
BatchNorm, the PReLU slopes). Feature maps are channels-last, ``[batch, time, freq, channels]``; sequences
``[batch, time, features]``.

Modules:
  ``products``    ``variance_init``, ``is_complex``, ``complex_parts`` (the complex decomposition), ``Dense``
  ``conv``        ``Conv2D`` and its functional form ``conv2d``, the lowerings ``conv_matmul`` / ``conv_patches``
  ``norm``        ``ComplexBatchNorm``, ``SplitBatchNorm``, ``norm_layer``
  ``activation``  ``PReLU``, ``ReImPReLU``
  ``recurrent``   ``LSTM``, ``LSTMStack``
  ``tcn``         ``CausalConv1D`` and ``causal_conv1d`` (dilated, causal, streamable), ``TCNBlock``, ``TCN``,
                  ``receptive_field``
  ``remat``       ``recompute_in_backward``: keep a function's inputs, not its intermediates, for the backward pass
  ``quant``       ``quantize_variables`` / ``dequantize_variables``: weights stored as int8 (per output channel
                  scales) or bfloat16 for inference (``Streamer(model, precision=...)``); not imported here

Lowerings: how a layer computes, never what (every choice gives the same result up to float rounding, the same
parameters and the same gradients). Two fields, set on the model (``get_model(name, impl=..., conv_lowering=...)``)
and passed down to its layers:

``impl``: how a complex product is written in real arithmetic (``Conv2D``, ``Dense``; ``complex_parts``):
  ``native``  XLA's complex convolution / matmul (4 real multiplications per complex MAC inside XLA);
  ``gauss``   three real products (Gauss/Karatsuba): k1 = (a+b)*c, k2 = a*(d-c), k3 = b*(c+d);
              re = k1 - k3, im = k1 + k2 for (a+ib)(c+id): 25 % fewer multiplications (default);
  ``real``    one real product on stacked ``[re, im]`` channels with the block kernel [[c, d], [-d, c]]
              (4 multiplications, one big kernel; what TensorFlow/TFLite export uses).

``conv_lowering``: how ``Conv2D`` lowers its convolution:
  ``xla``     ``lax.conv_general_dilated`` (transposed convolutions as input dilation);
  ``matmul``  patches-times-weights matmuls (``conv_matmul``); transposed convolutions in polyphase form, so no
              multiplication by an inserted zero. XLA's CPU convolutions with input dilation, and the gradients of
              strided ones, run far below matmul speed, so CPU training is several times faster this way (at more
              memory); single-frame streaming steps are faster too (figures: experiments/bench/RESULTS.md);
  ``auto``    (default) the fastest for the phase and backend: on CPU ``matmul`` when ``train=True`` and ``xla``
              for offline inference; ``xla`` always on GPU/TPU. Resolved when the layer is traced
              (``resolve_conv_lowering``), so a plain ``jax.jit(jax.value_and_grad(loss))`` over
              ``model.apply(..., train=True, mutable=["batch_stats"])`` gets the fast training path.
The streamer sets ``conv_lowering="matmul"`` (``jaxse.inference.streamer``); export lowers with ``impl="real"``.
The ``matmul`` lowering's backward pass is written by hand (``conv_matmul``: the input gradient is the adjoint
convolution in the same matmul form, the kernel gradient one matmul of regathered patches; the real products of
one convolution are differentiated one after the other and their outputs materialised, ``remat.materialize``), and
the convolutions, BatchNorms and PReLUs keep only their inputs for it (``recompute_in_backward``; a BatchNorm called
with ``activation=`` runs the PReLU in its own backward unit, keeping only the BN input), so a training step holds
about the activations, not every layer's patch matrices (figures: experiments/bench/RESULTS.md).

``compute_dtype`` (``Conv2D``, ``Dense``, ``LSTM``; the CRN/DCCRN field of the same name): the dtype of the real
products' operands. None (default): the parameters' precision (float32 parts of complex64). ``"bfloat16"``: mixed
precision: the Gauss operands (or ``real``/``native`` operands' real parts) and the LSTMs' input and recurrent
products in bfloat16, accumulated in float32 (``preferred_element_type``); parameters, gradients, optimiser state,
LSTM cells and carries stay float32/complex64. Off by default for training on CPU; the streamer offers it
(``Streamer(model, compute_dtype="bfloat16")``): a CPU with bfloat16 dot instructions (AVX512-BF16) runs the
per-hop step faster on half the weight bytes (figures: experiments/bench/RESULTS.md).
"""
from jaxse.nn.activation import PReLU, ReImPReLU
from jaxse.nn.conv import (CONV_LOWERINGS, Conv2D, conv2d, conv_matmul, conv_patches, interleave_phases,
                           resolve_conv_lowering)
from jaxse.nn.norm import ComplexBatchNorm, SplitBatchNorm, norm_layer
from jaxse.nn.products import IMPLS, Dense, complex_bilinear, complex_parts, is_complex, variance_init
from jaxse.nn.recurrent import LSTM, LSTMStack
from jaxse.nn.remat import recompute_in_backward
from jaxse.nn.tcn import TCN, CausalConv1D, TCNBlock, causal_conv1d, receptive_field

__all__ = ["CONV_LOWERINGS", "IMPLS", "TCN", "CausalConv1D", "ComplexBatchNorm", "Conv2D", "Dense", "LSTM",
           "LSTMStack", "PReLU", "ReImPReLU", "SplitBatchNorm", "TCNBlock", "causal_conv1d", "complex_bilinear",
           "complex_parts", "conv2d", "conv_matmul", "conv_patches", "interleave_phases", "is_complex", "norm_layer",
           "receptive_field", "recompute_in_backward", "resolve_conv_lowering", "variance_init"]
