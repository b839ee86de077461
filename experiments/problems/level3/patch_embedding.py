"""ViT patch embedding: non-overlapping Conv2d patches, flatten to tokens, add position embedding, LayerNorm."""
import torch
import torch.nn as nn

batch_size = 8
in_channels = 3
image_size = 224
patch_size = 16
embed_dim = 384


class Model(nn.Module):
    def __init__(self, in_channels, image_size, patch_size, embed_dim):
        super().__init__()
        num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches, embed_dim) * 0.02)
        self.norm = nn.LayerNorm(embed_dim)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        return self.norm(tokens + self.pos_embed)


def get_inputs():
    return [torch.randn(batch_size, in_channels, image_size, image_size)]


def get_init_inputs():
    return [in_channels, image_size, patch_size, embed_dim]


SCALES = {"large": {"batch_size": 256, "embed_dim": 768}}
