"""Triton code generation from a problem's fx graph.

``chain`` finds what fuses (elementwise steps around one row operation, after a matmul, a convolution or an input),
``kernels`` writes the Triton kernels, ``plan`` decides the segments and writes the ``ModelNew`` that launches them,
``proposer`` offers a few tuned starting points per problem (``templates.triton_fused`` exposes the full space to the
Optuna tuner).
"""
