"""Attention-probability step: softmax(scores * scale) under a causal mask, over (batch, heads, seq, seq)."""
import math

import torch
import torch.nn as nn

batch_size = 4
num_heads = 8
seq_len = 256
head_dim = 64


class Model(nn.Module):
    def __init__(self, seq_len, head_dim):
        super().__init__()
        self.scale = 1.0 / math.sqrt(head_dim)
        # causal mask: every row keeps its diagonal, so no row is fully masked
        self.register_buffer("mask", torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool)))

    def forward(self, scores):
        scores = (scores * self.scale).masked_fill(~self.mask, float("-inf"))
        return torch.softmax(scores, dim=-1)


def get_inputs():
    return [torch.randn(batch_size, num_heads, seq_len, seq_len)]


def get_init_inputs():
    return [seq_len, head_dim]


SCALES = {"large": {"batch_size": 16, "num_heads": 32, "seq_len": 1024}}
