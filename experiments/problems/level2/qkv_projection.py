"""Separate query, key and value Linear projections of the same hidden states, returned as a tuple."""
import torch
import torch.nn as nn

batch_size = 8
seq_len = 128
hidden = 512


class Model(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)


def get_inputs():
    return [torch.randn(batch_size, seq_len, hidden)]


def get_init_inputs():
    return [hidden]


SCALES = {"large": {"batch_size": 16, "seq_len": 1024, "hidden": 2048}}
