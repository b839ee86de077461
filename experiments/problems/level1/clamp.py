"""Clamp every element into [min_val, max_val] (hardtanh-style saturation)."""
import torch
import torch.nn as nn

batch_size = 2048
dim = 2048
min_val = -0.5
max_val = 1.0


class Model(nn.Module):
    def __init__(self, min_val, max_val):
        super().__init__()
        self.min_val = min_val
        self.max_val = max_val

    def forward(self, x):
        return torch.clamp(x, min=self.min_val, max=self.max_val)


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return [min_val, max_val]


SCALES = {"large": {"batch_size": 16384, "dim": 16384}}
