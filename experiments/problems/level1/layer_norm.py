"""LayerNorm over the hidden dimension of a (batch, seq, hidden) tensor, with a learned affine."""
import torch
import torch.nn as nn

batch_size = 16
seq_len = 256
hidden = 1024
eps = 1e-5


class Model(nn.Module):
    def __init__(self, hidden, eps):
        super().__init__()
        self.ln = nn.LayerNorm(hidden, eps=eps)
        # non-trivial affine so that a kernel which drops gamma or beta is caught
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        return self.ln(x)


def get_inputs():
    return [torch.randn(batch_size, seq_len, hidden)]


def get_init_inputs():
    return [hidden, eps]


SCALES = {"large": {"batch_size": 32, "seq_len": 2048, "hidden": 4096}}
