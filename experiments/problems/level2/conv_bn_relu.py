"""Conv2d (no bias) then BatchNorm2d in inference mode then ReLU: the standard CNN unit."""
import torch
import torch.nn as nn

batch_size = 8
in_channels = 32
out_channels = 64
height = 56
width = 56
kernel_size = 3


class Model(nn.Module):
    # Inference semantics: built in eval mode and train() is overridden so that it stays there; the
    # nn.BatchNorm2d module is kept (not F.batch_norm) so the conv->bn structure is the one real models have.
    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 1.5)
        self.train(False)

    def train(self, mode=True):
        return super().train(False)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def get_inputs():
    return [torch.randn(batch_size, in_channels, height, width)]


def get_init_inputs():
    return [in_channels, out_channels, kernel_size]


SCALES = {"large": {"batch_size": 32, "in_channels": 128, "out_channels": 128, "height": 112, "width": 112}}
