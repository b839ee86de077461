"""3x3 Conv2d followed by 2x2 average pooling (a downsampling stage)."""
import torch
import torch.nn as nn

batch_size = 8
in_channels = 32
out_channels = 64
height = 56
width = 56
kernel_size = 3
pool_size = 2


class Model(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, pool_size):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.pool = nn.AvgPool2d(pool_size)

    def forward(self, x):
        return self.pool(self.conv(x))


def get_inputs():
    return [torch.randn(batch_size, in_channels, height, width)]


def get_init_inputs():
    return [in_channels, out_channels, kernel_size, pool_size]


SCALES = {"large": {"batch_size": 32, "in_channels": 128, "out_channels": 128, "height": 112, "width": 112}}
