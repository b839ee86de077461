"""AvgPool1d (kernel 4, stride 2, padding 1) over the length of an (N, C, L) signal."""
import torch
import torch.nn as nn

batch_size = 32
channels = 64
length = 2048
kernel_size = 4
stride = 2
padding = 1


class Model(nn.Module):
    def __init__(self, kernel_size, stride, padding):
        super().__init__()
        self.pool = nn.AvgPool1d(kernel_size, stride=stride, padding=padding)

    def forward(self, x):
        return self.pool(x)


def get_inputs():
    return [torch.randn(batch_size, channels, length)]


def get_init_inputs():
    return [kernel_size, stride, padding]


SCALES = {"large": {"batch_size": 128, "channels": 256, "length": 8192}}
