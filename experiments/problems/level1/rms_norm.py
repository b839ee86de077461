"""RMSNorm written out by hand: x * rsqrt(mean(x^2) + eps) * weight over the hidden dimension."""
import torch
import torch.nn as nn

batch_size = 16
seq_len = 256
hidden = 1024
eps = 1e-6


class Model(nn.Module):
    def __init__(self, hidden, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(hidden).uniform_(0.5, 1.5))

    def forward(self, x):
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return x * inv_rms * self.weight


def get_inputs():
    return [torch.randn(batch_size, seq_len, hidden)]


def get_init_inputs():
    return [hidden, eps]


SCALES = {"large": {"batch_size": 32, "seq_len": 2048, "hidden": 4096}}
