"""Inclusive prefix sum (scan) along the rows of a 2-D tensor."""
import torch
import torch.nn as nn

batch_size = 256
length = 8192
scan_dim = 1


class Model(nn.Module):
    def __init__(self, scan_dim):
        super().__init__()
        self.scan_dim = scan_dim

    def forward(self, x):
        return torch.cumsum(x, dim=self.scan_dim)


def get_inputs():
    return [torch.randn(batch_size, length)]


def get_init_inputs():
    return [scan_dim]


SCALES = {"large": {"batch_size": 8192, "length": 32768}}
