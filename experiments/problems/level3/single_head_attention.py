"""Single-head self-attention written by hand: Q/K/V Linears, softmax(QK^T/sqrt(d))V, output Linear."""
import math

import torch
import torch.nn as nn

batch_size = 8
seq_len = 256
hidden = 256


class Model(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)
        self.scale = 1.0 / math.sqrt(hidden)

    def forward(self, x):
        q = self.q_proj(x)
        k = self.k_proj(x)
        v = self.v_proj(x)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        attn = torch.softmax(scores, dim=-1)
        return self.out_proj(torch.matmul(attn, v))


def get_inputs():
    return [torch.randn(batch_size, seq_len, hidden)]


def get_init_inputs():
    return [hidden]


SCALES = {"large": {"batch_size": 16, "seq_len": 2048, "hidden": 1024}}
