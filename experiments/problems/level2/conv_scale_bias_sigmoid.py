"""Conv2d, then a learned per-channel scale and bias, then sigmoid."""
import torch
import torch.nn as nn

batch_size = 8
in_channels = 32
out_channels = 64
height = 56
width = 56
kernel_size = 3


class Model(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.scale = nn.Parameter(torch.empty(out_channels, 1, 1).uniform_(0.5, 2.0))
        self.bias = nn.Parameter(torch.empty(out_channels, 1, 1).uniform_(-0.5, 0.5))

    def forward(self, x):
        return torch.sigmoid(self.conv(x) * self.scale + self.bias)


def get_inputs():
    return [torch.randn(batch_size, in_channels, height, width)]


def get_init_inputs():
    return [in_channels, out_channels, kernel_size]


SCALES = {"large": {"batch_size": 32, "in_channels": 128, "out_channels": 128, "height": 112, "width": 112}}
