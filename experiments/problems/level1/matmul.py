"""Dense matrix product C = A @ B of two square-ish float32 matrices."""
import torch
import torch.nn as nn

M = 512
K = 512
N = 512


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        return torch.matmul(a, b)


def get_inputs():
    return [torch.randn(M, K), torch.randn(K, N)]


def get_init_inputs():
    return []


# 137 GFLOP: compute bound on any GPU
SCALES = {"large": {"M": 4096, "K": 4096, "N": 4096}}
