"""Linear layer whose outputs are summed over the feature dimension: sum(x @ W^T + b, dim=1)."""
import torch
import torch.nn as nn

batch_size = 256
in_features = 1024
out_features = 1024


class Model(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.fc(x).sum(dim=1, keepdim=True)


def get_inputs():
    return [torch.randn(batch_size, in_features)]


def get_init_inputs():
    return [in_features, out_features]


SCALES = {"large": {"batch_size": 8192, "in_features": 4096, "out_features": 4096}}
