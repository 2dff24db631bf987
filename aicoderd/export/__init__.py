"""HF model → GGUF: the built-in converter, quantization, and the llama.cpp parity check.

Public entry points (each imports gguf/torch only when called): :func:`aicoderd.export.build.build`
(convert, quantize, verify), :func:`aicoderd.export.convert.export` (the converter alone),
:func:`aicoderd.export.verify.verify` (the parity check alone).
"""
