"""Maximum value of a 3-D tensor along its innermost dimension."""
import torch
import torch.nn as nn

batch_size = 32
dim1 = 256
dim2 = 512
reduce_dim = 2


class Model(nn.Module):
    def __init__(self, reduce_dim):
        super().__init__()
        self.reduce_dim = reduce_dim

    def forward(self, x):
        return torch.max(x, dim=self.reduce_dim).values


def get_inputs():
    return [torch.randn(batch_size, dim1, dim2)]


def get_init_inputs():
    return [reduce_dim]


SCALES = {"large": {"batch_size": 128, "dim1": 4096, "dim2": 1024}}
