"""Triton kernels and launchers, one module per op (same names as mbrl_fast/ops).

Imported lazily by the ops' dispatch (never by ``import mbrl_fast``): needs triton, and
a CUDA device or ``TRITON_INTERPRET=1`` with CPU tensors (tests only). docs/gpu.md
describes the kernels, what was verified without a GPU, and the GPU run.
"""
