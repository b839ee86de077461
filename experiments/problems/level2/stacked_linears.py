"""Two Linear layers applied back to back (expand then project) with no non-linearity between them."""
import torch
import torch.nn as nn

batch_size = 128
in_features = 512
hidden = 2048
out_features = 512


class Model(nn.Module):
    def __init__(self, in_features, hidden, out_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, out_features)

    def forward(self, x):
        return self.fc2(self.fc1(x))


def get_inputs():
    return [torch.randn(batch_size, in_features)]


def get_init_inputs():
    return [in_features, hidden, out_features]


SCALES = {"large": {"batch_size": 4096, "in_features": 2048, "hidden": 8192, "out_features": 2048}}
