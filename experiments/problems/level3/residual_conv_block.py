"""ResNet basic block in inference mode: relu(bn(conv(relu(bn(conv(x))))) + x)."""
import torch
import torch.nn as nn

batch_size = 8
channels = 32
height = 56
width = 56


class Model(nn.Module):
    # Inference semantics: built in eval mode and train() is overridden so that it stays there; the
    # nn.BatchNorm2d modules are kept (not F.batch_norm) so the conv->bn structure is the one real models have.
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 1.5)
        self.train(False)

    def train(self, mode=True):
        return super().train(False)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


def get_inputs():
    return [torch.randn(batch_size, channels, height, width)]


def get_init_inputs():
    return [channels]


SCALES = {"large": {"batch_size": 32, "channels": 128, "height": 56, "width": 56}}
