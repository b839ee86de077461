"""Conv1d with kernel 5, padding 2 and bias over an (N, C, L) sequence."""
import torch
import torch.nn as nn

batch_size = 16
in_channels = 32
out_channels = 64
length = 1024
kernel_size = 5


class Model(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x):
        return self.conv(x)


def get_inputs():
    return [torch.randn(batch_size, in_channels, length)]


def get_init_inputs():
    return [in_channels, out_channels, kernel_size]


SCALES = {"large": {"batch_size": 32, "in_channels": 256, "out_channels": 256, "length": 8192}}
