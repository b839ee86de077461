"""Batched matrix product torch.bmm of (B, M, K) by (B, K, N)."""
import torch
import torch.nn as nn

batch_size = 32
M = 128
K = 256
N = 128


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a, b):
        return torch.bmm(a, b)


def get_inputs():
    return [torch.randn(batch_size, M, K), torch.randn(batch_size, K, N)]


def get_init_inputs():
    return []


SCALES = {"large": {"batch_size": 64, "M": 1024, "K": 1024, "N": 1024}}
