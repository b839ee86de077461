"""AvgPool2d (3x3, stride 2, padding 1, padded zeros counted) on an NCHW feature map."""
import torch
import torch.nn as nn

batch_size = 16
channels = 32
height = 128
width = 128
kernel_size = 3
stride = 2
padding = 1


class Model(nn.Module):
    def __init__(self, kernel_size, stride, padding):
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size, stride=stride, padding=padding)

    def forward(self, x):
        return self.pool(x)


def get_inputs():
    return [torch.randn(batch_size, channels, height, width)]


def get_init_inputs():
    return [kernel_size, stride, padding]


SCALES = {"large": {"batch_size": 64, "channels": 128, "height": 256, "width": 256}}
