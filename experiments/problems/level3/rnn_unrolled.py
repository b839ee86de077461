"""Elman RNN (tanh) unrolled over a short sequence with Linear layers; returns every hidden state."""
import torch
import torch.nn as nn

batch_size = 64
seq_len = 8
input_size = 256
hidden_size = 512


class Model(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.i2h = nn.Linear(input_size, hidden_size)
        self.h2h = nn.Linear(hidden_size, hidden_size)

    def forward(self, x, h0):
        h = h0
        outputs = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.i2h(x[:, t]) + self.h2h(h))
            outputs.append(h)
        return torch.stack(outputs, dim=1)


def get_inputs():
    return [torch.randn(batch_size, seq_len, input_size), torch.randn(batch_size, hidden_size)]


def get_init_inputs():
    return [input_size, hidden_size]


SCALES = {"large": {"batch_size": 1024, "seq_len": 16, "input_size": 1024, "hidden_size": 2048}}
