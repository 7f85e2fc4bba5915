"""``ember.vision.datasets``: torchvision's datasets (files in the official formats)."""

from .cifar import CIFAR10, CIFAR100
from .fakedata import FakeData
from .folder import DatasetFolder, ImageFolder
from .imagenet import ImageNet
from .mnist import KMNIST, MNIST, FashionMNIST
from .vision import VisionDataset

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "FakeData",
    "DatasetFolder",
    "ImageFolder",
    "ImageNet",
    "MNIST",
    "FashionMNIST",
    "KMNIST",
    "VisionDataset",
]
