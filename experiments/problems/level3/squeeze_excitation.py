"""Squeeze-and-excitation: global average pool, Linear-ReLU-Linear-sigmoid, rescale the channels."""
import torch
import torch.nn as nn

batch_size = 16
channels = 64
height = 56
width = 56
reduction = 16


class Model(nn.Module):
    def __init__(self, channels, reduction):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x):
        s = x.mean(dim=(2, 3))
        s = torch.sigmoid(self.fc2(self.relu(self.fc1(s))))
        return x * s[:, :, None, None]


def get_inputs():
    return [torch.randn(batch_size, channels, height, width)]


def get_init_inputs():
    return [channels, reduction]


SCALES = {"large": {"batch_size": 64, "channels": 256, "height": 112, "width": 112}}
