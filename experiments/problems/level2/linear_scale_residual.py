"""Residual branch with a constant scale: x + alpha * Linear(x)."""
import torch
import torch.nn as nn

batch_size = 256
features = 1024
alpha = 0.5


class Model(nn.Module):
    def __init__(self, features, alpha):
        super().__init__()
        self.fc = nn.Linear(features, features)
        self.alpha = alpha

    def forward(self, x):
        return x + self.alpha * self.fc(x)


def get_inputs():
    return [torch.randn(batch_size, features)]


def get_init_inputs():
    return [features, alpha]


SCALES = {"large": {"batch_size": 8192, "features": 4096}}
