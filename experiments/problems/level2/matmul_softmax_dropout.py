"""Linear projection to logits, softmax over features, then dropout in inference mode (an identity)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

batch_size = 256
in_features = 1024
out_features = 1024
dropout_p = 0.1


class Model(nn.Module):
    def __init__(self, in_features, out_features, dropout_p):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.dropout_p = dropout_p

    def forward(self, x):
        probs = torch.softmax(self.fc(x), dim=-1)
        # inference semantics: p > 0 as in the trained model, but training=False makes it the identity
        return F.dropout(probs, p=self.dropout_p, training=False)


def get_inputs():
    return [torch.randn(batch_size, in_features)]


def get_init_inputs():
    return [in_features, out_features, dropout_p]


SCALES = {"large": {"batch_size": 8192, "in_features": 4096, "out_features": 8192}}
