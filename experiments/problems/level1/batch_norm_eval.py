"""BatchNorm2d in inference mode (running statistics) on an NCHW feature map."""
import torch
import torch.nn as nn

batch_size = 16
channels = 64
height = 64
width = 64


class Model(nn.Module):
    # Inference semantics: the model is put in eval mode at construction and train() is overridden so that it
    # stays there. The nn.BatchNorm2d module is kept as is (rather than calling F.batch_norm) so that the
    # structure is the one real models have; running statistics are set to non-trivial values from the seeded RNG.
    def __init__(self, channels):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        with torch.no_grad():
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 1.5)
        self.train(False)

    def train(self, mode=True):
        return super().train(False)

    def forward(self, x):
        return self.bn(x)


def get_inputs():
    return [torch.randn(batch_size, channels, height, width)]


def get_init_inputs():
    return [channels]


SCALES = {"large": {"batch_size": 64, "channels": 256, "height": 128, "width": 128}}
