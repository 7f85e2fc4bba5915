"""``ember.vision.datasets``: torchvision's datasets (files in the official formats)."""

from ._tv_wrapper import wrap_dataset_for_transforms_v2
from .cifar import CIFAR10, CIFAR100
from .coco import CocoCaptions, CocoDetection
from .faces_chars import SBU, CelebA, Flickr8k, Flickr30k, Omniglot
from .fakedata import FakeData
from .folder import DatasetFolder, ImageFolder
from .image_lists import DTD, Country211, EuroSAT, Food101, RenderedSST2
from .image_lists_2 import GTSRB, Flowers102, OxfordIIITPet
from .imagenet import ImageNet
from .mnist import KMNIST, MNIST, FashionMNIST
from .mnist_variants import EMNIST, QMNIST, USPS
from .svhn_stl10 import STL10, SVHN
from .unsupported import (
    HMDB51,
    LSUN,
    UCF101,
    Cityscapes,
    PhotoTour,
    SBDataset,
)
from .vision import VisionDataset
from .voc import VOCDetection, VOCSegmentation

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
    "CocoDetection",
    "CocoCaptions",
    "VOCDetection",
    "VOCSegmentation",
    "SVHN",
    "STL10",
    "EuroSAT",
    "Country211",
    "RenderedSST2",
    "DTD",
    "Food101",
    "OxfordIIITPet",
    "Flowers102",
    "GTSRB",
    "wrap_dataset_for_transforms_v2",
    "EMNIST",
    "QMNIST",
    "USPS",
    "Omniglot",
    "CelebA",
    "Flickr30k",
    "Cityscapes",
    "Flickr8k",
    "HMDB51",
    "LSUN",
    "PhotoTour",
    "SBDataset",
    "SBU",
    "UCF101",
]
