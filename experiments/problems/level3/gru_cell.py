"""One GRU cell step written with two Linear layers (input-to-hidden and hidden-to-hidden gates)."""
import torch
import torch.nn as nn

batch_size = 256
input_size = 512
hidden_size = 512


class Model(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.x2h = nn.Linear(input_size, 3 * hidden_size)
        self.h2h = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, x, h):
        i_r, i_z, i_n = self.x2h(x).chunk(3, dim=1)
        h_r, h_z, h_n = self.h2h(h).chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1.0 - z) * n + z * h


def get_inputs():
    return [torch.randn(batch_size, input_size), torch.randn(batch_size, hidden_size)]


def get_init_inputs():
    return [input_size, hidden_size]


SCALES = {"large": {"batch_size": 4096, "input_size": 2048, "hidden_size": 2048}}
