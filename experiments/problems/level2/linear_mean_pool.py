"""Per-token Linear projection followed by mean pooling over the sequence: mean_s(Linear(x))."""
import torch
import torch.nn as nn

batch_size = 16
seq_len = 256
hidden = 512
out_features = 512


class Model(nn.Module):
    def __init__(self, hidden, out_features):
        super().__init__()
        self.fc = nn.Linear(hidden, out_features)

    def forward(self, x):
        return self.fc(x).mean(dim=1)


def get_inputs():
    return [torch.randn(batch_size, seq_len, hidden)]


def get_init_inputs():
    return [hidden, out_features]


SCALES = {"large": {"batch_size": 32, "seq_len": 1024, "hidden": 2048, "out_features": 2048}}
