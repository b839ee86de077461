"""LayerNorm with affine followed by a Linear projection, over (batch, seq, hidden)."""
import torch
import torch.nn as nn

batch_size = 8
seq_len = 128
hidden = 512
out_features = 512


class Model(nn.Module):
    def __init__(self, hidden, out_features):
        super().__init__()
        self.ln = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, out_features)
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        return self.fc(self.ln(x))


def get_inputs():
    return [torch.randn(batch_size, seq_len, hidden)]


def get_init_inputs():
    return [hidden, out_features]


SCALES = {"large": {"batch_size": 16, "seq_len": 512, "hidden": 4096, "out_features": 4096}}
