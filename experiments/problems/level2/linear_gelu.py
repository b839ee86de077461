"""Linear layer with bias followed by exact GELU (the first half of a transformer MLP)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

batch_size = 256
in_features = 1024
out_features = 1024


class Model(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x):
        return F.gelu(self.fc(x))


def get_inputs():
    return [torch.randn(batch_size, in_features)]


def get_init_inputs():
    return [in_features, out_features]


SCALES = {"large": {"batch_size": 8192, "in_features": 4096, "out_features": 4096}}
