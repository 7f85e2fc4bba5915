"""Layer families, one file each; each engineer appends the import line of their family."""

# torch's submodule paths that programs import from or test against
# (``nn.modules.batchnorm.BatchNorm2d``, ``from torch.nn.modules.utils import _pair``)
from . import batchnorm, channelshuffle, distance, instancenorm, utils  # noqa: F401
from .activation import *  # noqa: F403  (D1)
from .adaptive import AdaptiveLogSoftmaxWithLoss  # (nn breadth)
from .attention import MultiheadAttention  # (D3)
from .container import *  # noqa: F403  (D1)
from .container_extra import Container  # (nn breadth)
from .conv import *  # noqa: F403  (D2)
from .dropout import *  # noqa: F403  (D1)
from .flatten import *  # noqa: F403  (D1)
from .fold import *  # noqa: F403  (D2)
from .lazy import LazyModuleMixin  # (D1)
from .lazy_extra import *  # noqa: F403  (nn breadth: LazyConv*, LazyBatchNorm*, ...)
from .linear import *  # noqa: F403  (D1)
from .loss import *  # noqa: F403  (D1)
from .loss_extra import *  # noqa: F403  (nn breadth: margin losses, CTC, NLLLoss2d, ...)
from .module import Module  # (D1: nn.modules.Module, as in PyTorch)
from .normalization import *  # noqa: F403  (D1)
from .normalization_extra import *  # noqa: F403  (nn breadth: LRN, distances, ChannelShuffle)
from .padding import *  # noqa: F403  (D2)
from .pixelshuffle import *  # noqa: F403  (D2)
from .pooling import *  # noqa: F403  (D2)
from .pooling_extra import *  # noqa: F403  (nn breadth: LPPool, MaxUnpool, FractionalMaxPool)
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from .sparse import *  # noqa: F403  (D1)
from .transformer import (  # (D3)
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from .upsampling import *  # noqa: F403  (D2)
