"""Neural-network building blocks: Module, Parameter, layers and initialisation.

Read ``module.py`` first (how parameters are found, saved and moved), then the
layers, which are thin: each owns its weights and calls one function of
``tinyseg.functional``, whose math lives in ``tinyseg/ops``.
"""

from . import init
from .activation import Dropout, Flatten, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .conv import Conv2d, ConvTranspose2d
from .linear import Linear
from .module import Module, ModuleList, Parameter, Sequential
from .norm import BatchNorm2d
from .pool import AvgPool2d, MaxPool2d, MaxUnpool2d, Upsample

__all__ = [
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "ConvTranspose2d",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "MaxUnpool2d",
    "Module",
    "ModuleList",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Upsample",
    "init",
]
