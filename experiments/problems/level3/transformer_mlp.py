"""Transformer feed-forward block: Linear(d, 4d), GELU, Linear(4d, d), dropout (p=0, an identity)."""
import torch
import torch.nn as nn

batch_size = 8
seq_len = 128
hidden = 256
expansion = 4


class Model(nn.Module):
    def __init__(self, hidden, expansion):
        super().__init__()
        self.fc1 = nn.Linear(hidden, expansion * hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(expansion * hidden, hidden)
        self.dropout = nn.Dropout(p=0.0)

    def forward(self, x):
        return self.dropout(self.fc2(self.act(self.fc1(x))))


def get_inputs():
    return [torch.randn(batch_size, seq_len, hidden)]


def get_init_inputs():
    return [hidden, expansion]


SCALES = {"large": {"batch_size": 16, "seq_len": 1024, "hidden": 1024}}
