"""SRHAForSemanticSegmentation: DeepLabV3+ (docs/method.md §1) or Mask2Former (docs/method.md §4) at output stride 16, with SRM and
style elimination (docs/method.md §2)."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Tuple

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .backbones import backbone_spec, load_backbone_weights
from .configuration_srha import SRHAConfig
from .heads import DecodeHead, decode_head_class
from .heads.base import kaiming_init
from .outputs import SRHASemanticSegmenterOutput  # noqa: F401 - the output type, importable from here as before
from .srm import STD_EPS, SemanticRearrangement


def style_elimination(x: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Parameter-free instance normalisation of docs/method.md §1.1 step 3: ``(x - mean) / (std + 1e-7)`` per
    sample and channel over (h, w), with the unbiased std by default (docs/method.md §9 M7)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, unbiased=unbiased)
    return (x - mean) / (std + STD_EPS)


STAGES = ("layer0", "layer1", "layer2", "layer3", "layer4")


@contextmanager
def _running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """The BatchNorms inside ``module`` compute exactly as in training, and their running statistics and
    ``num_batches_tracked`` are put back afterwards: the recomputation that gradient checkpointing runs in
    the backward pass must not update them a second time (and must save the same tensors as the forward,
    so the norms themselves stay untouched)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [[b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, values in zip(norms, saved):
                for buffer, value in zip((norm.running_mean, norm.running_var, norm.num_batches_tracked), values):
                    buffer.copy_(value)


def _checkpointable(stage: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``stage``'s call for a checkpoint function: the first call is the forward, every later one is the
    backward's recomputation, run with the BatchNorm running statistics frozen (:func:`_running_stats_frozen`),
    so that a checkpointed step updates them exactly once, as an ordinary step does."""
    calls = []

    def run(x: torch.Tensor) -> torch.Tensor:
        if not calls:
            calls.append(1)
            return stage(x)
        with _running_stats_frozen(stage):
            return stage(x)

    return run


class SRHAPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the transformers conventions of the SRHA models. There is no base model
    (as in transformers' UperNet): ``base_model_prefix`` stays transformers' empty default."""

    config_class = SRHAConfig
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The decode head's modules: the head's own rule (:meth:`~srha_hf.heads.DecodeHead.init_module`;
        DeepLabV3+: Kaiming-normal fan_in for convs with zero bias, docs/method.md §1.3; Mask2Former: the
        reference's scheme). Backbone (random init only; ImageNet weights are loaded afterwards):
        Kaiming-normal fan_out, as torchvision's ResNet and MobileNetV2. Norms: weight 1, bias 0, fresh
        running statistics. A module with unsaved constants (a ``reset_constants()`` method, e.g. Lite0's
        input conversion) re-creates them here: a model loaded with ``from_pretrained`` is first built on
        the meta device, and whatever the state dict does not hold comes back only through this method."""
        reset_constants = getattr(module, "reset_constants", None)
        if callable(reset_constants):
            reset_constants()
            return
        if getattr(module, "_srha_head", False) and self.decode_head.init_module(module):
            return
        if kaiming_init(module, "fan_out"):
            return
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
            if module.weight is not None:
                init.ones_(module.weight)
                init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)


class SRHAForSemanticSegmentation(SRHAPreTrainedModel):
    """SRHA's DeepLabV3+ (docs/method.md §1): ``layer0`` → [SRM in training] → style elimination → ``layer1..4``
    → ASPP + decoder (main logits at input size) and the ``dsn`` auxiliary head on layer3.

    With ``config.decode_head == "mask2former"`` (docs/method.md §4) the heads are one ``mask2former`` child
    (:class:`~srha_hf.heads.mask2former.Mask2FormerHead` on layer1..4), ``logits`` are the semantic
    scores of docs/method.md §4.4 at the input size, and ``loss`` (with labels) is the Mask2Former set loss.

    Eval: ``model(pixel_values).logits`` is ``(B, num_labels, H, W)``, bilinearly upsampled with
    ``align_corners=True`` as the reference. Train with ``labels``: SRM doubles the batch to
    ``[original; rearranged]`` and the output carries logits, aux logits and the layer1-4 features.
    The backbone's ImageNet weights are loaded when ``config.backbone_pretrained`` is set (a failed
    load raises :class:`~srha_hf.backbones.BackboneLoadError`).
    """

    def __init__(self, config: SRHAConfig):
        config = copy.deepcopy(config)
        super().__init__(config)
        spec = backbone_spec(config.backbone)
        stages = spec.split(
            spec.build(),
            dilate_all_layer4_blocks=config.resnet_dilate_all_layer4_blocks,
            d16_only_stride2=config.d16_dilate_only_stride2,
        )
        for name, stage in zip(STAGES, stages):
            self.add_module(name, stage)
        self.srm = SemanticRearrangement(config)

        head = decode_head_class(config.decode_head)(config, spec.channels)
        self._attach_decode_head(head)
        # device_map="auto" places whole blocks (those with a residual or a concatenation inside)
        self._no_split_modules = sorted(set(spec.no_split_modules) | set(head.no_split_modules))
        self.gradient_checkpointing = False

        if config.freeze_layer0:
            self.layer0.requires_grad_(False)
        self.post_init()

        if config.backbone_pretrained:
            source = config.backbone_pretrained
            load_backbone_weights(self.backbone_stages(), config.backbone, source)
            # The weights are consumed: the saved config records where they came from but asks for no
            # new load, so ``from_pretrained`` never re-fetches ImageNet weights over trained ones.
            self.config.backbone_pretrained = None
            self.config.backbone_pretrained_source = source
        if config.freeze_layer0:
            self.layer0.eval()

    def _attach_decode_head(self, head: DecodeHead) -> None:
        """Hold ``head`` as :attr:`decode_head` and register its children as the model's own, under the
        authors' names (``aspp``, ..., or ``mask2former``; :mod:`srha_hf.heads.base`), tagged so that
        :meth:`_init_weights` gives them the head's initialisation."""
        object.__setattr__(self, "_decode_head", head)  # not a child: its parameters are registered once, below
        for name, child in head.named_children():
            self.add_module(name, child)
        for module in head.modules():
            module._srha_head = True

    @property
    def decode_head(self) -> DecodeHead:
        """The decode head (:class:`~srha_hf.heads.DecodeHead`) of ``config.decode_head``."""
        return self._decode_head

    def backbone_stages(self) -> nn.ModuleDict:
        """The five stages as a (non-registered) ``ModuleDict`` view, keys ``layer0..layer4``."""
        return nn.ModuleDict({name: getattr(self, name) for name in STAGES})

    def train(self, mode: bool = True):
        """As ``nn.Module.train``, but a frozen layer0 stays in eval mode (docs/method.md §1.4)."""
        super().train(mode)
        if self.config.freeze_layer0:
            self.layer0.eval()
        return self

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One backbone stage, under the checkpoint function that ``gradient_checkpointing_enable`` set when
        that is on, the model is training, gradients are recorded and the stage has trainable weights."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled() and any(p.requires_grad for p in stage.parameters()):
            return self._gradient_checkpointing_func(_checkpointable(stage), x)
        return stage(x)

    def forward_features(
        self,
        pixel_values: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        srm_weights: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
        check_labels: bool = True,
        include_layer0: bool = False,
    ) -> Tuple[torch.Tensor, ...]:
        """Backbone part of docs/method.md §1.1 steps 1-4: returns ``(f1, f2, f3, f4)``, the outputs of
        layer1..layer4. SRM runs when labels are given, the model is in training mode and ``config.srm`` is
        on. With ``include_layer0``, ``(f0, f1, f2, f3, f4)``: ``f0`` is layer0's output as the rest of the
        network receives it, before style elimination (with SRM's rearranged copy appended in training)."""
        x = self._run_stage(self.layer0, pixel_values)
        if labels is not None and self.training and self.config.srm:
            x = self.srm(x, labels, srm_weights, generator, check_labels=check_labels)
        f0 = x
        if self.config.style_elimination:
            x = style_elimination(x, unbiased=self.config.style_elimination_unbiased_std)
        f1 = self._run_stage(self.layer1, x)
        f2 = self._run_stage(self.layer2, f1)
        f3 = self._run_stage(self.layer3, f2)
        f4 = self._run_stage(self.layer4, f3)
        return (f0, f1, f2, f3, f4) if include_layer0 else (f1, f2, f3, f4)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        srm_weights: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
        output_features: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        return_loss: bool = True,
        check_labels: bool = True,
    ):
        r"""
        Args:
            pixel_values: ``(B, 3, H, W)`` ImageNet-normalised images.
            labels: ``(B, H, W)`` train IDs (255 = ignore). In training they drive SRM and the loss.
            srm_weights: ``(B, R, R)`` SRM mixing weights (see :func:`srha_hf.semantic_rearrangement`);
                drawn from ``generator`` (or torch's global RNG) when omitted.
            output_features: return aux logits and layer1-4 features also in eval mode.
            output_hidden_states: return the backbone's five stage outputs (layer0..layer4, see
                :meth:`forward_features`) as ``hidden_states`` (default ``config.output_hidden_states``).
            return_dict: a :class:`~srha_hf.SRHASemanticSegmenterOutput` (default ``config.return_dict``), or
                the tuple of its non-``None`` fields in order, ``hidden_states`` last.
            return_loss: compute ``loss`` when ``labels`` are given (``compute_srha_loss`` turns it off
                for DeepLabV3+, which computes CE and aux itself, so they are not computed twice).
            check_labels: check that ``labels`` hold train IDs before SRM (``compute_srha_loss``, which
                checks each batch once, turns it off).
        """
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be (B, 3, H, W), got shape {tuple(pixel_values.shape)}")
        if labels is not None and labels.shape[0] != pixel_values.shape[0]:
            raise ValueError(f"labels batch {labels.shape[0]} does not match pixel_values batch {pixel_values.shape[0]}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        with_extras = self.training or bool(output_features)

        f0, *features = self.forward_features(pixel_values, labels, srm_weights, generator, check_labels, include_layer0=True)
        outputs = self.decode_head(
            tuple(features), pixel_values.shape[-2:], labels, self.config,
            with_extras=with_extras, return_dict=return_dict, return_loss=return_loss,
        )  # fmt: skip
        if not output_hidden_states:
            return outputs
        hidden_states = (f0, *features)
        if return_dict:
            outputs["hidden_states"] = hidden_states  # the last field, so to_tuple() keeps the tuple's order
            return outputs
        return outputs + (hidden_states,)
