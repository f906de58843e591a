"""What the model and the objective need from a decode head, and the registry of heads by name.

A decode head is an ``nn.Module`` built from the config and the backbone's stage widths. It maps the
layer1..4 features to the model's output (with the loss when the loss needs the forward's internals),
turns a training output into the objective's segmentation terms, and says what prediction consistency
(PC) compares. The model holds it as ``model.decode_head`` and never branches on the head's name;
:func:`srha_hf.compute_srha_loss` asks the model's head for its terms.

Parameter names: the model registers the head's children as its own children (``aspp``, ``bot_fine``, ...,
or ``mask2former``), so that state dicts keep the authors' names (docs/method.md §1.5) with no
``decode_head.`` prefix, and the head itself stays out of the module tree. Reassigning one of those
children on the model (``model.aspp = ...``) is therefore not supported: build a new model instead.

Adding a head: subclass :class:`DecodeHead` in one file and decorate it with :func:`register_decode_head`
(inside the package, import the file in ``heads/__init__.py``); ``SRHAConfig(decode_head=<name>)`` then
builds it.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple, Type

import torch
from torch import nn
from transformers import initialization as init

from ..outputs import SRHASemanticSegmenterOutput


def as_model_output(return_dict: bool, loss: Optional[torch.Tensor], values: Optional[Sequence] = None, **fields):
    """The model's output: a :class:`~srha_hf.SRHASemanticSegmenterOutput` of ``loss`` and ``fields``, or
    (``return_dict`` off) its ``to_tuple()``: the non-``None`` fields in the output's field order, so that the
    tuple and the dict hold the same tensors in the same order (transformers' convention). ``values`` is
    no longer read (the tuple once came from it); it stays for heads written against the old signature."""
    output = SRHASemanticSegmenterOutput(loss=loss, **fields)
    return output if return_dict else output.to_tuple()


def kaiming_init(module: nn.Module, mode: str) -> bool:
    """Kaiming-normal weights (``mode`` "fan_in" or "fan_out", ReLU gain) and zero bias for a conv or a linear;
    returns whether ``module`` was one."""
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        return False
    init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")
    if module.bias is not None:
        init.zeros_(module.bias)
    return True


class DecodeHead(nn.Module):
    """The contract of a decode head.

    ``__init__(config, channels)`` builds the modules (``channels``: layer0..layer4's widths). The model
    passes its own config to every call, so a head reads its switches at run time.
    """

    #: ``compute_srha_loss`` asks the forward for the loss (``return_loss=True``) when this is set, and
    #: otherwise computes the segmentation terms itself with :meth:`training_terms`.
    loss_in_forward: bool = False
    #: class names of the head's modules that ``device_map="auto"`` must keep on one device (the model's
    #: ``_no_split_modules`` adds them to the backbone's)
    no_split_modules: Tuple[str, ...] = ()

    def __init__(self, config, channels: Sequence[int]):
        super().__init__()

    @classmethod
    def check_strides(cls, strides: Sequence[int], config) -> None:
        """Called before the head is built with the backbone's measured layer0..layer4 strides: raise
        ``ValueError`` for a layout the head cannot use, or warn for one it was not designed for. Default: any."""

    def forward(
        self,
        features: Tuple[torch.Tensor, ...],
        size: Tuple[int, int],
        labels: Optional[torch.Tensor],
        config,
        *,
        with_extras: bool,
        return_dict: bool,
        return_loss: bool,
    ):
        """From the layer1..4 ``features`` to the model's output at the input ``size`` (``loss`` with
        ``labels`` and ``return_loss``; auxiliary outputs and the features with ``with_extras``)."""
        raise NotImplementedError

    def training_terms(self, outputs, labels: torch.Tensor, config) -> Dict[str, torch.Tensor]:
        """The objective's weighted segmentation terms for ``outputs`` of a training forward (``labels``:
        one map per output row)."""
        raise NotImplementedError

    def pc_inputs(self, logits: torch.Tensor, config) -> torch.Tensor:
        """What PC's softmaxes act on, from the output's ``logits``."""
        return logits

    def init_module(self, module: nn.Module) -> bool:
        """Initialise one of the head's modules at model creation (``SRHAPreTrainedModel._init_weights``);
        return ``False`` to leave it to the model's rule for norms. Default (docs/method.md §1.3): convs and
        linears Kaiming-normal fan_in with zero bias."""
        return kaiming_init(module, "fan_in")


_HEADS: Dict[str, Type[DecodeHead]] = {}


def register_decode_head(name: str) -> Callable[[Type[DecodeHead]], Type[DecodeHead]]:
    """Class decorator: register a :class:`DecodeHead` subclass as ``SRHAConfig(decode_head=name)``."""

    def register(cls: Type[DecodeHead]) -> Type[DecodeHead]:
        if not (isinstance(cls, type) and issubclass(cls, DecodeHead)):
            raise TypeError(f"register_decode_head({name!r}) takes a DecodeHead subclass, got {cls!r}")
        if name in _HEADS and _HEADS[name] is not cls:
            raise ValueError(f"decode head {name!r} is already registered as {_HEADS[name].__qualname__}")
        _HEADS[name] = cls
        return cls

    return register


def available_decode_heads() -> Tuple[str, ...]:
    """The registered head names, in registration order."""
    return tuple(_HEADS)


def decode_head_class(name: str) -> Type[DecodeHead]:
    """The :class:`DecodeHead` subclass registered as ``name``."""
    try:
        return _HEADS[name]
    except (KeyError, TypeError):
        raise ValueError(f"decode_head={name!r}; expected one of {', '.join(_HEADS)}") from None
