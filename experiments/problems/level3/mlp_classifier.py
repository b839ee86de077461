"""MLP classifier head: Linear, ReLU, then two adjacent Linears with no activation between them."""
import torch
import torch.nn as nn

batch_size = 256
in_features = 512
hidden1 = 1024
hidden2 = 1024
num_classes = 100


class Model(nn.Module):
    def __init__(self, in_features, hidden1, hidden2, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden1, hidden2)
        self.fc3 = nn.Linear(hidden2, num_classes)

    def forward(self, x):
        return self.fc3(self.fc2(self.relu(self.fc1(x))))


def get_inputs():
    return [torch.randn(batch_size, in_features)]


def get_init_inputs():
    return [in_features, hidden1, hidden2, num_classes]


SCALES = {"large": {"batch_size": 8192, "in_features": 2048, "hidden1": 4096, "hidden2": 4096, "num_classes": 1000}}
