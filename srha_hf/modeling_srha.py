"""SRHAForSemanticSegmentation: DeepLabV3+ (docs/method.md §1) or Mask2Former (docs/method.md §4) at output stride 16, with SRM and
style elimination (docs/method.md §2)."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterator, Optional, Tuple

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .backbones import load_backbone_weights, spec_for_config
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
    """The BatchNorms inside ``module`` compute exactly as in training, but update copies of their running
    statistics and ``num_batches_tracked``, and get their own tensors back afterwards: the recomputation that
    gradient checkpointing runs in the backward pass must not update them a second time. (The norms keep
    their settings, so the recomputation saves the same tensors as the forward; no saved tensor is written
    in place.)"""
    names = ("running_mean", "running_var", "num_batches_tracked")
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    originals = [[getattr(m, name) for name in names] for m in norms]
    for norm, tensors in zip(norms, originals):
        for name, tensor in zip(names, tensors):
            setattr(norm, name, tensor.clone())
    try:
        yield
    finally:
        for norm, tensors in zip(norms, originals):
            for name, tensor in zip(names, tensors):
                setattr(norm, name, tensor)


def _reentrant(checkpoint_func) -> bool:
    """Whether the checkpoint function that ``activation_checkpointing_enable`` set (a ``functools.partial``
    of torch's ``checkpoint``) checkpoints reentrantly: unless ``use_reentrant=False`` was given."""
    return getattr(checkpoint_func, "keywords", {}).get("use_reentrant", True) is not False


class StageRunner(GradientCheckpointingLayer):
    """Runs one backbone stage (``layer0`` … ``layer4``), which it refers to but does not hold: the stage stays
    the model's own child, under the authors' name, and the runner adds nothing to the state dict.

    It is what transformers' conventions act on: ``activation_checkpointing_enable`` checkpoints it (a
    ``GradientCheckpointingLayer``), and ``output_hidden_states`` records its outputs (``_can_record_outputs``).
    Under checkpointing, every call after the forward is the backward's recomputation, run with the stage's
    BatchNorm running statistics frozen (:func:`_running_stats_frozen`): a checkpointed step updates them
    exactly once, as an ordinary step does.
    """

    def __init__(self, stage: nn.Module):
        super().__init__()
        object.__setattr__(self, "stage", stage)  # a reference, not a child
        self.calls = 0  # forwards since the model's last call of this stage
        # an instance attribute from the start (the class default is GradientCheckpointingLayer's): the model's
        # forward writes it back after each stage, and torch.compile would otherwise recompile on the 2nd call
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            return self.stage(x)
        with _running_stats_frozen(self.stage):
            return self.stage(x)


class SRHAPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the transformers conventions of the SRHA models. There is no base model
    (as in transformers' UperNet): ``base_model_prefix`` stays transformers' empty default."""

    config_class = SRHAConfig
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    # output_hidden_states: the five stage outputs, recorded from the stage runners (not the pixels before them)
    _can_record_outputs = {
        "hidden_states": OutputRecorder(StageRunner, capture_initial_hidden_state=False, num_hidden_layers_key="num_stages"),
    }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The decode head's modules: the head's own rule (:meth:`~srha_hf.heads.DecodeHead.init_module`;
        DeepLabV3+: Kaiming-normal fan_in for convs with zero bias, docs/method.md §1.3; Mask2Former: the
        reference's scheme). Backbone (random init only; ImageNet weights are loaded afterwards):
        Kaiming-normal fan_out, as torchvision's ResNet and MobileNetV2. Norms: weight 1, bias 0, fresh
        running statistics. A transformers backbone's modules (``backbone_config``) get that backbone's own
        ``_init_weights`` (which also re-creates its unsaved buffers). A module with unsaved constants (a ``reset_constants()`` method, e.g. Lite0's
        input conversion) re-creates them here: a model loaded with ``from_pretrained`` is first built on
        the meta device, and whatever the state dict does not hold comes back only through this method."""
        backbone_init = getattr(module, "_srha_backbone_init", None)
        if backbone_init is not None:  # a transformers backbone's module: that backbone's own rule
            backbone_init(module)
            return
        reset_constants = getattr(module, "reset_constants", None)
        if callable(reset_constants):
            reset_constants()
            return
        backbone_init = getattr(module, "_srha_backbone_init", None)  # a backbone with its own rule (DINOv2's)
        if callable(backbone_init):
            backbone_init(module)
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


def _frozen_modules(model: nn.Module, config: SRHAConfig, num_blocks: int) -> Tuple[str, ...]:
    """Freeze what the config asks (no gradients) and return the names of the modules that stay in eval mode:
    layer0 (``freeze_layer0``), every stage (``backbone_freeze``), the first ``backbone_frozen_blocks``
    transformer blocks (the stages' ``blocks``, keyed by block index; DINOv2)."""
    names = []
    if config.freeze_layer0:
        names.append("layer0")
    if config.backbone_freeze:
        names.extend(STAGES)
    frozen_blocks = config.backbone_frozen_blocks
    if frozen_blocks:
        if frozen_blocks > num_blocks:
            raise ValueError(f"backbone_frozen_blocks={frozen_blocks}, but the {config.backbone} backbone has {num_blocks} transformer blocks")
        for stage in STAGES[1:]:
            blocks = getattr(getattr(model, stage), "blocks", {})
            names.extend(f"{stage}.blocks.{i}" for i in blocks if int(i) < frozen_blocks)
    for name in names:
        model.get_submodule(name).requires_grad_(False)
    return tuple(dict.fromkeys(names))


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
        spec = spec_for_config(config)
        if config.backbone_config is not None:  # record what was measured (16, or the backbone's native stride)
            self.config.backbone_output_stride = spec.strides[4]
        stages = spec.split(
            spec.build(),
            dilate_all_layer4_blocks=config.resnet_dilate_all_layer4_blocks,
            d16_only_stride2=config.d16_dilate_only_stride2,
        )
        for name, stage in zip(STAGES, stages):
            self.add_module(name, stage)
        self.srm = SemanticRearrangement(config)

        head_class = decode_head_class(config.decode_head)
        head_class.check_strides(spec.strides, config)
        head = head_class(config, spec.channels)
        self._attach_decode_head(head)
        # device_map="auto" places whole blocks (those with a residual or a concatenation inside)
        self._no_split_modules = sorted(set(spec.no_split_modules) | set(head.no_split_modules))
        self.stage_runners = nn.ModuleList(StageRunner(stage) for stage in stages)

        # style elimination: None = the backbone's default (on for the CNNs, off for DINOv2; docs/method.md §1.2)
        self.uses_style_elimination = spec.style_elimination if config.style_elimination is None else config.style_elimination
        self._always_eval = _frozen_modules(self, config, spec.num_blocks)
        # what does not train, by name: from_pretrained's loading makes new parameters, which must be frozen again
        self._frozen_parameters = tuple(name for name, p in self.named_parameters() if not p.requires_grad)
        self.post_init()

        if config.backbone_pretrained:
            source = config.backbone_pretrained
            load_backbone_weights(self.backbone_stages(), spec, source)
            # The weights are consumed: the saved config records where they came from but asks for no
            # new load, so ``from_pretrained`` never re-fetches ImageNet weights over trained ones.
            self.config.backbone_pretrained = None
            self.config.backbone_pretrained_source = source
        self._keep_frozen_in_eval()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """As ``transformers``' ``from_pretrained``; the parameters that the config freezes (layer0, a frozen
        backbone or frozen blocks) come back frozen (the loading replaces parameters, which would otherwise
        require gradients again)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        parameters = dict(model.named_parameters())
        for name in model._frozen_parameters:
            parameters[name].requires_grad_(False)
        return loaded

    def _keep_frozen_in_eval(self) -> None:
        for name in self._always_eval:
            self.get_submodule(name).eval()

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
        """As ``nn.Module.train``, but a frozen layer0 stays in eval mode (docs/method.md §1.4), and so do a frozen
        backbone (``backbone_freeze``) and frozen transformer blocks (``backbone_frozen_blocks``)."""
        super().train(mode)
        self._keep_frozen_in_eval()
        return self

    def _run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Backbone stage ``index`` through its :class:`StageRunner`. A frozen stage (no trainable weight) is
        never checkpointed, nor is one whose layers checkpoint themselves (DINOv2's blocks). Under reentrant
        checkpointing a stage whose input needs no gradient (layer1 after a frozen layer0) gets an input that
        does, or its weights would get no gradient."""
        runner = self.stage_runners[index]
        runner.calls = 0
        checkpointing = runner.gradient_checkpointing
        if getattr(runner.stage, "checkpoints_own_layers", False) or not any(p.requires_grad for p in runner.stage.parameters()):
            runner.gradient_checkpointing = False
        elif checkpointing and self.training and torch.is_grad_enabled() and not x.requires_grad and _reentrant(runner._gradient_checkpointing_func):
            x = x.detach().requires_grad_(True)
        try:
            return runner(x)
        finally:
            runner.gradient_checkpointing = checkpointing

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func: Callable = None, every_n_layers: int = 1):
        """transformers' own, except that the decode head's layers always checkpoint without reentrancy:
        transformers' Mask2Former decoder layer takes its tensors as keyword arguments, which reentrant
        checkpointing cannot differentiate through."""
        kwargs = {} if gradient_checkpointing_func is None else {"gradient_checkpointing_func": gradient_checkpointing_func}
        super()._set_gradient_checkpointing(enable, every_n_layers=every_n_layers, **kwargs)
        # a transformers backbone's own checkpointing layers (Swin's blocks) stay off: the stage runners checkpoint the
        # stages; a stage whose layers checkpoint themselves (DINOv2's blocks, `checkpoints_own_layers`) keeps them
        for name in STAGES:
            if getattr(getattr(self, name), "checkpoints_own_layers", False):
                continue
            for module in getattr(self, name).modules():
                if isinstance(module, GradientCheckpointingLayer):
                    module.gradient_checkpointing = False
        func = getattr(gradient_checkpointing_func, "func", None)
        if enable and func is not None and _reentrant(gradient_checkpointing_func):
            head_func = partial(func, **{**gradient_checkpointing_func.keywords, "use_reentrant": False})
            for module in self.decode_head.modules():
                if hasattr(module, "gradient_checkpointing"):
                    module._gradient_checkpointing_func = head_func

    def forward_features(
        self,
        pixel_values: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        srm_weights: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
        check_labels: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone part of docs/method.md §1.1 steps 1-4: returns ``(f1, f2, f3, f4)``, the outputs of
        layer1..layer4. SRM runs when labels are given, the model is in training mode and ``config.srm`` is on.

        A stage with a ``feature_map`` method (DINOv2's, whose stages carry the token sequence) hands its output
        on to the next stage unchanged and gives its ``f`` as that side output (docs/method.md §1.2)."""
        x = self._run_stage(0, pixel_values)
        if labels is not None and self.training and self.config.srm:
            x = self.srm(x, labels, srm_weights, generator, check_labels=check_labels)
        if self.uses_style_elimination:
            x = style_elimination(x, unbiased=self.config.style_elimination_unbiased_std)
        features = []
        for index in range(1, 5):
            x = self._run_stage(index, x)
            feature_map = getattr(self.stage_runners[index].stage, "feature_map", None)
            features.append(x if feature_map is None else feature_map(x, pixel_values.shape[-2:]))
        return tuple(features)

    @capture_outputs
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
            output_hidden_states: return the outputs of the five backbone stages layer0..layer4 as
                ``hidden_states`` (default ``config.output_hidden_states``; recorded by transformers'
                ``capture_outputs`` from the :class:`StageRunner` modules). ``layer0``'s is the stage's own
                output (before SRM, so it has the batch's ``B`` rows in training while layer1..4 have ``2B``).
                A list of indices (negative ones counted from the end) keeps only those, the others ``None``.
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
        # capture_outputs takes return_dict (a keyword) and makes the tuple itself, after adding hidden_states
        with_extras = self.training or bool(output_features)
        features = self.forward_features(pixel_values, labels, srm_weights, generator, check_labels=check_labels)
        outputs = self.decode_head(
            features, pixel_values.shape[-2:], labels, self.config,
            with_extras=with_extras, return_dict=True, return_loss=return_loss,
        )  # fmt: skip
        return outputs.to_tuple() if return_dict is False else outputs
