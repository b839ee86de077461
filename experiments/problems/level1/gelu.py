"""Exact (erf-based) GELU applied elementwise to a 2-D activation tensor."""
import torch
import torch.nn as nn
import torch.nn.functional as F

batch_size = 2048
dim = 2048


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return F.gelu(x)


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []


# 268M elements: 1 GiB read + 1 GiB written, memory bound on a GPU
SCALES = {"large": {"batch_size": 16384, "dim": 16384}}
