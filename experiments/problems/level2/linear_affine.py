"""Linear layer followed by a learned per-feature scale and shift (foldable into the layer's weights)."""
import torch
import torch.nn as nn

batch_size = 256
in_features = 1024
out_features = 1024


class Model(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.scale = nn.Parameter(torch.empty(out_features).uniform_(0.5, 2.0))
        self.shift = nn.Parameter(torch.empty(out_features).uniform_(-0.5, 0.5))

    def forward(self, x):
        return self.fc(x) * self.scale + self.shift


def get_inputs():
    return [torch.randn(batch_size, in_features)]


def get_init_inputs():
    return [in_features, out_features]


SCALES = {"large": {"batch_size": 8192, "in_features": 4096, "out_features": 4096}}
