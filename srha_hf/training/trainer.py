"""The SRHA training loop (docs/method.md §3.5, §5, §7.3, §8.3-8.5) on Accelerate.

``train(config)`` runs one recipe in three readable parts, in the style of transformers'
``run_semantic_segmentation_no_trainer.py``:

* :func:`setup`: the Accelerator, the data (every root checked first; class-uniform centroids), the
  student, the frozen ImageNet teacher and the SGD optimiser, and the state of a resumed run, gathered in
  one :class:`TrainingRun`;
* :func:`train_loop`: epochs of class-uniform batches identical on every process; each step is
  :func:`training_step` (poly learning rates, the teacher's update, :func:`srha_hf.compute_srha_loss`,
  backward, SGD); logging, checkpoints and periodic evaluations on their schedules; SIGTERM saves and stops;
* :func:`finish`: the final evaluation and its report, then the model folder and its card
  (:mod:`srha_hf.hub`), ``all_results.json`` and the results table.

Determinism (docs/method.md §7.3, §8.4): the data order is a pure function of the epoch, every augmentation and the
student's SRM weights of ``(seed, epoch, sample index)``, and the step's other draws (dsn dropout, the
teacher's SRM weights) of ``(seed, micro-batch index over the run, process)`` (the step without gradient
accumulation). So a resumed run replays what an uninterrupted one
would have done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import signal
import time
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Tuple

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from ..atomic import write_json_atomic
from ..data import SRHATrainDataset, SRMCollator, build_train_transform, describe_dataset, load_benchmark
from ..data.labels import BENCHMARK_NAMES
from ..data.synthetic import make_synthetic_benchmark, synthetic_eval_sizes
from ..data.synthetic_scene import Appearance
from ..data.uniform import EpochSampler
from ..evaluation import evaluate_model
from ..evaluation_report import write_evaluation_report
from ..hub import publish_trained_model, push_model_folder, training_card_fields
from ..modeling_srha import SRHAForSemanticSegmentation
from ..objective import build_teacher, compute_srha_loss, pc_warmup_factor, update_teacher_ema, uses_teacher
from ..protocols import WHOLE
from .checkpoint import list_checkpoints, load_checkpoint, resolve_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, save_config
from .optim import build_optimizer, set_poly_lr
from .precision import describe as describe_precision
from .precision import resolve_mixed_precision
from .pretrain import ensure_pretrained_backbone
from .results import print_results_table, target_mean, training_time_fields, write_all_results

APPEARANCE_FILE = "synthetic_appearance.json"  # a run on a trial benchmark: its Appearance hook's marker


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops without saving the bad state."""


def _log(accelerator, message: str) -> None:
    if accelerator.is_main_process:
        print(f"[srha] {message}", flush=True)


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 10_007 + rank * 101) % (2**63 - 1)


def _hardware(accelerator) -> str:
    if accelerator.device.type == "cuda":
        return f"{accelerator.num_processes} x {torch.cuda.get_device_name(accelerator.device)}"
    # the kernels torch picked (AVX2, AVX512, ...): a CPU run's numbers can differ between them in the last digits
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{accelerator.num_processes} CPU process(es) on {os.cpu_count()} cores ({platform.machine()}, {capability} kernels)"


def resolve_data(config: TrainConfig, accelerator, appearance: Optional[Appearance] = None) -> tuple:
    """Data roots per dataset (generating the synthetic benchmark when asked, painted by ``appearance``: a
    trial benchmark's hook, default the benchmark as shipped) and evaluation sizes.

    Every root the run needs is checked before any work, naming the config key to set."""
    if appearance is not None and not config.synthetic_data:
        raise ConfigError(f"an appearance ({appearance!r}) paints the synthetic benchmark: it needs synthetic_data: true")
    eval_sizes = None
    roots = {name: config.data_root(name) for name in BENCHMARK_NAMES}
    if config.synthetic_data:
        size = tuple(config.synthetic_size)
        if accelerator.is_main_process:
            _log(accelerator, f"synthetic benchmark in {config.synthetic_root} (generated on first use, then reused)")
            make_synthetic_benchmark(
                config.synthetic_root,
                num_train=config.synthetic_num_train,
                num_val=config.synthetic_num_val,
                size=size,
                appearance=appearance,
            )
        accelerator.wait_for_everyone()
        roots = {name: str(Path(config.synthetic_root) / name) for name in roots}
        eval_sizes = synthetic_eval_sizes(size)
    for name in [config.source_dataset] + list(config.val_datasets):
        root = roots[name]
        if not root:
            raise ConfigError(f"{name}_root is not set: set it in the config file or pass --{name}_root /path/to/{name}")
        if not Path(root).is_dir():
            raise ConfigError(f"{name}_root={root!r} is not a folder")
    return roots, eval_sizes


class _Interrupt:
    """SIGTERM sets a flag; the loop saves a checkpoint after the current step and exits cleanly."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            self.requested = True

        try:
            self._previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not in the main thread
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def set_cudnn_determinism(deterministic: bool) -> None:
    """The reference's cuDNN settings (``deterministic`` true: deterministic kernels, no benchmark-mode
    autotuning); false lets cuDNN autotune (faster convolutions on GPUs, run-to-run differences)."""
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def train_transform_kwargs(config: TrainConfig) -> dict:
    """The :func:`~srha_hf.data.build_train_transform` arguments of a run (docs/method.md §5.3 and the §9 D2/D4 switches)."""
    return {
        "crop_size": config.crop_size,
        "scale_range": (config.scale_min, config.scale_max),
        "color_jitter": config.color_jitter,
        "gaussian_blur": config.gaussian_blur,
        "blur_p": config.blur_p,
        "blur_rounding": config.blur_rounding,
        "shift_centroid_by_padding": config.shift_centroid_by_padding,
        "exact_resize": config.exact_resize,
    }


def _any_process(accelerator, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, "max").item() > 0)


def _eval_subset(config: TrainConfig, val_sets: dict, final: bool) -> dict:
    if final:
        return val_sets
    if config.eval_select_on == "source":  # docs/method.md §8.3: select on the source, never on a target
        return {config.source_dataset: val_sets[config.source_dataset]}
    if not config.eval_first_dataset_only:
        return val_sets
    first = next(iter(val_sets))
    return {first: val_sets[first]}


@dataclasses.dataclass
class TrainingRun:
    """Everything :func:`train_loop` and :func:`finish` need, built by :func:`setup`. ``step``, ``epoch``
    and ``batch_in_epoch`` are the position the loop advances (and a checkpoint stores)."""

    config: TrainConfig
    recipe: str
    accelerator: Any
    output_dir: Path
    trackers: Optional[str]
    val_sets: Dict[str, Any]
    eval_sizes: Optional[dict]
    train_set: Any
    sampler: Any
    collator: Any
    student: Any  # as prepared by Accelerate (DDP-wrapped on several processes)
    unwrapped: Any
    teacher: Any
    optimizer: Any
    accumulation_steps: int = 1  # micro-batches per optimizer step (total_batch_size, docs/method.md §5.4)
    step: int = 0  # optimizer steps
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of this epoch consumed (a multiple of accumulation_steps at a step)
    last_saved: Optional[int] = None  # the step of the newest checkpoint this run wrote or resumed from
    time_before: float = 0.0  # training seconds of the processes before this one (from the resumed checkpoint)
    time_from_step: int = 0  # the step from which time_before counts (> 0: resumed from a checkpoint without it)
    started: float = dataclasses.field(default_factory=time.time)  # when this process's training loop began

    def state(self) -> dict:
        """What ``trainer_state.json`` of a checkpoint holds."""
        elapsed = round(self.time_before + time.time() - self.started, 1)
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "training_time_s": elapsed, "training_time_from_step": self.time_from_step,
                "accumulation_steps": self.accumulation_steps, "config": self.config.to_dict(), "recipe": self.recipe}  # fmt: skip


def train(config: TrainConfig, recipe: str = "custom", appearance: Optional[Appearance] = None) -> Dict[str, object]:
    """Run one training job; returns ``{"status", "step", "results", "model_dir"}``.

    ``appearance`` (synthetic data only; default the benchmark as shipped) is the hook of a trial benchmark
    (:class:`srha_hf.data.synthetic_scene.Appearance`; ``experiments/train_trial.py``): the benchmark is
    generated with it, and the pretraining stage's cache key records it.

    ``status`` is ``"completed"`` or ``"interrupted"`` (SIGTERM: a checkpoint was saved). A non-finite
    loss raises :class:`NonFiniteLossError` naming the step; the last good checkpoint stays."""
    backbone_init = config.backbone_pretrained
    if config.pretrain_steps > 0:  # before this run's Accelerator: the stage is a run of its own
        main = PartialState().is_main_process
        log = lambda message: main and print(f"[srha] {message}", flush=True)  # noqa: E731
        backbone_init = str(ensure_pretrained_backbone(config, train, log=log, appearance=appearance))
    run = setup(config, recipe, backbone_init, appearance)
    start_step = run.step
    run.started = time.time()
    if train_loop(run) == "interrupted":
        return stop_interrupted(run)
    return finish(run, training_time_fields(time.time() - run.started, run.step - start_step, run.time_before, run.time_from_step))


# --------------------------------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------------------------------


def build_accelerator(config: TrainConfig) -> Tuple[Any, Optional[str]]:
    """The run's Accelerator (precision from the recipe unless the launch line overrides it) and its
    tracker name (None for ``report_to: none``)."""
    output_dir = Path(config.output_dir)
    trackers = None if config.report_to in ("none", "", None) else config.report_to
    mixed_precision, precision_source = resolve_mixed_precision(config.mixed_precision)
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        # Without CUDA, cpu=True lets Accelerate pick up a torchrun launch as a gloo multi-CPU run
        # (otherwise every process would think it trains alone).
        cpu=not torch.cuda.is_available(),
        log_with=trackers,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    _log(accelerator, f"precision: {describe_precision(accelerator.mixed_precision)} ({precision_source})")
    return accelerator, trackers


def setup_data(config: TrainConfig, accelerator, output_dir: Path, appearance: Optional[Appearance] = None) -> dict:
    """The source split as a class-uniform training set, its epoch sampler and SRM collator, and the
    val splits (the source's own last, when ``eval_source``). Every root is checked before any work."""
    roots, eval_sizes = resolve_data(config, accelerator, appearance)

    def load(name: str, split: str):
        return load_benchmark(name, roots[name], split, split_file=config.split_file_for(name, split), size_mismatch=config.size_mismatch)

    source = load(config.source_dataset, config.train_split)
    _log(accelerator, f"source: {describe_dataset(source)}")
    val_sets = {name: load(name, config.val_split) for name in config.val_datasets}
    if (config.eval_source or config.eval_select_on == "source") and config.source_dataset not in val_sets:  # last, so periodic evaluations skip it
        val_sets[config.source_dataset] = load(config.source_dataset, config.val_split)

    def make_train_set():
        return SRHATrainDataset(
            source,
            build_train_transform(**train_transform_kwargs(config)),
            seed=config.seed,
            class_uniform=config.class_uniform,
            pct=config.class_uniform_pct,
            tile=config.class_uniform_tile,
            whole_tiles_only=config.class_uniform_whole_tiles_only,
            cache_dir=config.centroid_cache_dir or str(output_dir / "centroids"),
            progress=accelerator.is_main_process,
            centroid_num_proc=config.centroid_num_proc,
        )

    # The main process extracts (and caches) the class-uniform centroids; the others then read the cache.
    train_set = make_train_set() if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    if train_set is None:
        train_set = make_train_set()
    # docs/method.md §7.3: the permutation is seeded with the epoch number alone, the same on every process.
    world, rank = accelerator.num_processes, accelerator.process_index
    sampler = EpochSampler(train_set, num_replicas=world, rank=rank, seed=0, pad=True, yield_epoch=True)
    return {"val_sets": val_sets, "eval_sizes": eval_sizes, "train_set": train_set, "sampler": sampler}


def setup_models(config: TrainConfig, accelerator, backbone_init: Optional[str]) -> dict:
    """Student, teacher (a copy of the student's initial weights; none for rows without alignment
    terms) and the SGD optimiser, prepared by Accelerate. SyncBN on multi-GPU CUDA runs only."""
    model_config = config.model_config(backbone_pretrained=backbone_init)
    set_seed(config.seed)
    student = SRHAForSemanticSegmentation(model_config)
    teacher = build_teacher(student.config, student) if uses_teacher(model_config) else None
    if config.gradient_checkpointing:
        student.activation_checkpointing_enable()
    if accelerator.num_processes > 1 and accelerator.device.type == "cuda":
        student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)
        if teacher is not None:
            teacher = torch.nn.SyncBatchNorm.convert_sync_batchnorm(teacher)
        student.train()
    if teacher is not None:
        teacher.to(accelerator.device)
    optimizer = build_optimizer(student, config.lr, config.decoder_lr, config.momentum, config.weight_decay)
    student, optimizer = accelerator.prepare(student, optimizer)
    if teacher is not None and model_config.teacher_ema_alpha < 1.0:
        accelerator.register_for_checkpointing(teacher)
    collator = SRMCollator(seed=config.seed, concentration=model_config.srm_concentration)
    return {"student": student, "unwrapped": accelerator.unwrap_model(student), "teacher": teacher, "optimizer": optimizer,
            "collator": collator}  # fmt: skip


def setup(config: TrainConfig, recipe: str, backbone_init: Optional[str], appearance: Optional[Appearance] = None) -> TrainingRun:
    """Accelerator, output folder (with ``train_config.yaml``), data, models, the resumed position and
    the trackers: a :class:`TrainingRun` ready for :func:`train_loop`."""
    set_cudnn_determinism(config.deterministic)
    accelerator, trackers = build_accelerator(config)
    output_dir = Path(config.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, output_dir / "train_config.yaml")
        if appearance is not None:  # a trial benchmark's look, beside the config it trained with
            write_json_atomic(output_dir / APPEARANCE_FILE, {"appearance": type(appearance).__name__, "marker": appearance.marker()}, indent=1)
    accelerator.wait_for_everyone()
    data = setup_data(config, accelerator, output_dir, appearance)
    resume_path = resolve_checkpoint(output_dir, config.resume_from_checkpoint)
    if config.resume_from_checkpoint == "latest" and resume_path is None:
        _log(accelerator, f"no checkpoint in {output_dir} yet: starting fresh")
    models = setup_models(config, accelerator, backbone_init)
    accumulation = accumulation_steps(config, accelerator.num_processes, log=lambda m: _log(accelerator, m))
    run = TrainingRun(config=config, recipe=recipe, accelerator=accelerator, output_dir=output_dir, trackers=trackers,
                      accumulation_steps=accumulation, **data, **models)  # fmt: skip
    if resume_path is not None:
        state = load_checkpoint(accelerator, resume_path)
        run.step, run.epoch, run.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        if "training_time_s" in state:  # absent from checkpoints written before the time was recorded
            run.time_before, run.time_from_step = state["training_time_s"], state["training_time_from_step"]
        else:
            run.time_from_step = run.step
        if state.get("accumulation_steps", 1) != accumulation:
            raise ConfigError(
                f"{resume_path} was written with {state.get('accumulation_steps', 1)} micro-batch(es) per step, this run has "
                f"{accumulation}: resume with the same batch_size, total_batch_size and number of processes"
            )
        run.last_saved = run.step
        _log(accelerator, f"resumed from {resume_path} at step {run.step} (epoch {run.epoch}, batch {run.batch_in_epoch})")
    if trackers:
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v)) for k, v in config.to_dict().items()}
        accelerator.init_trackers("srha", config={k: v for k, v in flat.items() if v is not None})
    return run


def accumulation_steps(config: TrainConfig, num_processes: int, log=print) -> int:
    """Micro-batches per optimizer step for ``total_batch_size`` (docs/method.md §5.4), logged with the
    per-process batch, the processes and the effective total; a warning when the effective total is not
    the recipe's. Accumulation reproduces the total batch's gradient for the loss; SRM's region statistics
    and BatchNorm (SyncBN on several GPUs) still see one micro-batch, which the log says."""
    per_step = config.batch_size * num_processes
    total = config.total_batch_size
    steps = 1 if total is None else max(1, -(-total // per_step))
    effective = steps * per_step
    log(f"batch: {config.batch_size} per process x {num_processes} process(es) x {steps} accumulation step(s) = "
        f"{effective} images per optimizer step" + ("" if total is None else f" (recipe's total_batch_size {total})"))  # fmt: skip
    if total is not None and effective != total:
        log(f"WARNING: the effective total batch {effective} differs from the recipe's total_batch_size {total}: "
            f"{config.batch_size} x {num_processes} does not divide it")  # fmt: skip
    if steps > 1:
        log(f"gradient accumulation: SRM statistics and BatchNorm see micro-batches of {config.batch_size} image(s) per process, "
            "not the total (docs/method.md §5.4)")  # fmt: skip
    return steps


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


def epoch_loader(run: TrainingRun):
    """The rest of epoch ``run.epoch`` from ``run.batch_in_epoch`` on, as a DataLoader of micro-batches,
    and the number of micro-batches the whole epoch uses (whole optimizer steps only: a remainder too
    small for a step is dropped, as a loader of the total batch drops its last incomplete batch)."""
    config = run.config
    run.sampler.set_epoch(run.epoch)
    keys = list(run.sampler)
    n_batches = len(keys) // config.batch_size // run.accumulation_steps * run.accumulation_steps
    if n_batches == 0:
        raise ConfigError(
            f"{config.source_dataset} {config.train_split} has {len(run.train_set)} items: too few for "
            f"batch_size={config.batch_size} x {run.accumulation_steps} accumulation step(s) on {run.accelerator.num_processes} process(es)"
        )
    size = config.batch_size
    batches = [keys[i * size : (i + 1) * size] for i in range(run.batch_in_epoch, n_batches)]
    loader = torch.utils.data.DataLoader(
        run.train_set,
        batch_sampler=batches,
        collate_fn=run.collator,
        num_workers=config.num_workers,
        pin_memory=run.accelerator.device.type == "cuda",
    )
    return loader, n_batches


class StepResult(NamedTuple):
    """What :func:`training_step` reports about the step it took."""

    mean_loss: torch.Tensor  # the loss averaged over processes
    terms: Dict[str, torch.Tensor]  # the loss terms, on the device
    lrs: list  # the two parameter groups' learning rates
    pc_weight: float  # the effective PC weight: pc_weight x the warm-up factor of the step


def training_step(run: TrainingRun, batches: list) -> StepResult:
    """One SGD step on ``batches`` (``run.accumulation_steps`` micro-batches; one without accumulation);
    advances ``run.step`` and returns its :class:`StepResult`.

    Each micro-batch's loss (its own mean: CE over its valid pixels, as the reference normalises a batch)
    is divided by the number of micro-batches before its backward, so the summed gradient is the mean of
    the micro-batches' gradients: the big batch's exactly when every micro-batch holds as many valid pixels
    (docs/method.md §5.4). Gradients are synchronised across processes on the last micro-batch only."""
    accelerator, config = run.accelerator, run.config
    lrs = set_poly_lr(run.optimizer, run.step, config.max_iter, config.poly_power)  # poly over optimizer steps
    if run.teacher is not None:  # as the reference: before the forward (step 0 copies the initial student)
        update_teacher_ema(run.teacher, run.unwrapped, run.step, run.unwrapped.config.teacher_ema_alpha)
    pc_scale = pc_warmup_factor(run.step, config.pc_warmup_steps)  # a function of the step: resume-exact
    total_loss, total_terms = 0.0, {}
    for index, batch in enumerate(batches):
        last = index == len(batches) - 1
        sync = contextlib.nullcontext() if last else accelerator.no_sync(run.student)
        with sync:
            mean_loss, terms = _micro_batch_backward(run, batch, run.step * len(batches) + index, pc_scale, len(batches))
        total_loss = total_loss + mean_loss / len(batches)
        for key, value in terms.items():
            total_terms[key] = total_terms.get(key, 0.0) + value / len(batches)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    run.batch_in_epoch += len(batches)
    return StepResult(total_loss, total_terms, lrs, run.unwrapped.config.pc_weight * pc_scale)


def _micro_batch_backward(run: TrainingRun, batch: dict, draw: int, pc_scale: float, parts: int):
    """Forward and backward of one micro-batch (loss / ``parts``); its draws (dsn dropout, the teacher's SRM
    weights) are seeded by ``draw``, the micro-batch's index over the run (the step without accumulation)."""
    accelerator, config = run.accelerator, run.config
    device = accelerator.device
    seed = _step_seed(config.seed, draw, accelerator.process_index)
    torch.manual_seed(seed)  # dsn dropout
    generator = torch.Generator(device=device).manual_seed(seed)  # the teacher's SRM draws
    pixel_values = batch["pixel_values"].to(device, non_blocking=True)
    labels = batch["labels"].to(device, non_blocking=True)
    srm_weights = batch["srm_weights"].to(device, non_blocking=True)
    with accelerator.autocast():
        loss, terms = compute_srha_loss(run.student, run.teacher, pixel_values, labels, srm_weights=srm_weights, generator=generator,
                                        pc_scale=pc_scale)  # fmt: skip
    mean_loss = accelerator.reduce(loss.detach().float(), "mean")
    if not torch.isfinite(mean_loss):
        bad = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
        latest = list_checkpoints(run.output_dir)
        raise NonFiniteLossError(
            f"non-finite loss ({mean_loss.item()}) at step {run.step + 1} ({bad}); stopping. "
            f"Last good checkpoint: {latest[-1] if latest else 'none'}"
        )
    accelerator.backward(loss / parts if parts > 1 else loss)
    return mean_loss, terms


class LogWindow:
    """Loss, loss terms and throughput accumulated between two log lines. The terms stay on the device
    (no host synchronisation per step) and are averaged over processes when the window is logged."""

    def __init__(self):
        self.loss, self.count, self.images, self.terms, self.started = 0.0, 0, 0, {}, time.time()

    def add(self, mean_loss: torch.Tensor, terms: Dict[str, torch.Tensor], images: int) -> None:
        self.loss += mean_loss.item()
        self.count += 1
        self.images += images
        for k, v in terms.items():
            self.terms[k] = self.terms.get(k, 0.0) + v.float()

    def logs(self, accelerator, lrs: list, epoch: int) -> Dict[str, float]:
        """The window's means as tracker scalars (``train/loss``, ``train/<term>``, ...)."""
        elapsed = max(time.time() - self.started, 1e-9)
        logs = {
            "train/loss": self.loss / self.count,
            "train/lr_encoder": lrs[0],
            "train/lr_decoder": lrs[1],
            "train/images_per_s": self.images / elapsed,
            "train/it_per_s": self.count / elapsed,
            "train/epoch": epoch,
        }
        names = sorted(self.terms)
        means = accelerator.reduce(torch.stack([self.terms[k] / self.count for k in names]), "mean")
        logs.update({f"train/{k}": v.item() for k, v in zip(names, means)})
        return logs


def save(run: TrainingRun) -> Path:
    """A checkpoint of the run at its current step (every process calls it)."""
    path = save_checkpoint(run.accelerator, run.output_dir, run.step, run.state(), run.config.checkpoints_total_limit)
    run.last_saved = run.step
    _log(run.accelerator, f"saved {path}")
    return path


def evaluate(run: TrainingRun, final: bool) -> Dict[str, dict]:
    """Evaluate the student on the val splits (periodic evaluations: the first only, unless
    ``eval_first_dataset_only`` is off, or the source's val split only with ``eval_select_on: source``; the
    final one under the recipe's protocol and class subsets), log the mIoUs and return the results.
    Periodic results also go to ``eval_history.json``, from which a checkpoint can be selected."""
    config, accelerator = run.config, run.accelerator
    protocol = config.eval_protocol_spec() if final else WHOLE
    results = evaluate_model(
        run.unwrapped,
        _eval_subset(config, run.val_sets, final),
        accelerator=accelerator,
        batch_size=config.eval_batch_size,
        mixed_precision=None if accelerator.mixed_precision == "no" else accelerator.mixed_precision,
        mapillary_crop=config.mapillary_crop,
        eval_sizes=run.eval_sizes,
        progress=accelerator.is_main_process,
        max_images=config.eval_max_images,
        drop_remainder=config.eval_drop_remainder,
        protocol=protocol,
        class_subsets=config.class_subsets() if final else (),
    )
    run.unwrapped.train()
    if not final and accelerator.is_main_process:
        record_periodic_evaluation(run.output_dir / EVAL_HISTORY, run.step, config.eval_select_on, results)
    if run.trackers:
        scalars = {f"{name}/{key}": res[key] for name, res in results.items() for key in ("mean_iou", "mean_accuracy", "overall_accuracy")}
        accelerator.log(scalars, step=run.step)
    _log(accelerator, f"step {run.step}: " + ", ".join(f"{n} mIoU {r['mean_iou'] * 100:.2f}" for n, r in results.items()))
    return results


EVAL_HISTORY = "eval_history.json"


def record_periodic_evaluation(path: Path, step: int, select_on: str, results: Dict[str, dict]) -> None:
    """Add one periodic evaluation to ``eval_history.json`` (atomically; an entry of a later or equal step,
    left by a run that was killed and resumed before it, is replaced)."""
    history = json.loads(path.read_text()) if path.is_file() else {"evaluations": []}
    history["select_on"] = select_on
    history["note"] = "periodic evaluations; the published model (model/) is the last iteration, not a selected checkpoint"
    kept = [e for e in history["evaluations"] if e["step"] < step]
    kept.append({"step": step, "mean_iou": {name: r["mean_iou"] for name, r in results.items()}})
    history["evaluations"] = kept
    write_json_atomic(path, history, strict=True, indent=1, sort_keys=False)


def train_loop(run: TrainingRun) -> str:
    """Train from ``run.step`` to ``max_iter``; returns ``"completed"``, or ``"interrupted"`` when a
    process received SIGTERM (the caller then saves a checkpoint)."""
    config, accelerator = run.config, run.accelerator
    progress = tqdm(total=config.max_iter, initial=run.step, desc="train", disable=not accelerator.is_main_process, dynamic_ncols=True)
    window = LogWindow()
    run.unwrapped.train()
    with _Interrupt() as interrupt:
        while run.step < config.max_iter:
            loader, n_batches = epoch_loader(run)
            pending = []
            for batch in loader:
                pending.append(batch)
                if len(pending) < run.accumulation_steps:
                    continue
                step = training_step(run, pending)
                pending = []
                progress.update(1)
                window.add(step.mean_loss, step.terms, config.batch_size * accelerator.num_processes * run.accumulation_steps)
                if run.step % config.logging_steps == 0 or run.step == config.max_iter:
                    logs = window.logs(accelerator, step.lrs, run.epoch)
                    if "train/pc" in logs:  # the effective PC weight of the window's last step
                        logs["train/pc_weight"] = step.pc_weight
                    progress.set_postfix(loss=f"{logs['train/loss']:.3f}", lr=f"{step.lrs[1]:.2e}")
                    if run.trackers:
                        accelerator.log(logs, step=run.step)
                    window = LogWindow()
                if config.checkpointing_steps and run.step % config.checkpointing_steps == 0:
                    save(run)
                if config.eval_steps > 0 and run.step % config.eval_steps == 0 and run.step < config.max_iter:
                    evaluate(run, final=False)
                if _any_process(accelerator, interrupt.requested):
                    progress.close()
                    return "interrupted"
                if run.step >= config.max_iter:
                    break
            if run.batch_in_epoch >= n_batches:
                run.epoch, run.batch_in_epoch = run.epoch + 1, 0
                if config.eval_steps == -1 and run.step < config.max_iter:
                    evaluate(run, final=False)
    progress.close()
    return "completed"


# --------------------------------------------------------------------------------------------------
# Finish
# --------------------------------------------------------------------------------------------------


def stop_interrupted(run: TrainingRun) -> Dict[str, object]:
    """After SIGTERM: a checkpoint at the current step (unless one was just written), then stop."""
    if run.last_saved != run.step:
        save(run)
    _log(run.accelerator, f"SIGTERM: checkpoint saved at step {run.step}; resume with --resume_from_checkpoint latest")
    run.accelerator.end_training()
    return {"status": "interrupted", "step": run.step, "results": {}, "model_dir": None}


def _cumulative_note(timing: Dict[str, object], step: int) -> str:
    """For a resumed run, the time over all its steps (or why it is not known)."""
    if timing["steps_this_process"] == step:
        return ""
    if timing["training_time_from_step"]:
        return f"; {timing['training_time_s']:.1f} s from step {timing['training_time_from_step']} (earlier steps' time not recorded)"
    return f"; {timing['training_time_s']:.1f} s over all {step} steps, with the earlier processes'"


def finish(run: TrainingRun, timing: Dict[str, object]) -> Dict[str, object]:
    """The last checkpoint, the final evaluation and its report (``eval/``), the model folder with its
    card (``model/``), ``all_results.json``, the results table, and the push to the Hub when asked."""
    config, accelerator = run.config, run.accelerator
    _log(accelerator, f"trained {timing['steps_this_process']} steps in {timing['training_time_this_process_s']:.1f} s "
                      f"({timing['train_it_per_s']:.2f} it/s)" + _cumulative_note(timing, run.step))  # fmt: skip
    if config.checkpointing_steps and run.last_saved != run.step:
        save(run)
    results = evaluate(run, final=True)
    model_dir = run.output_dir / "model"
    if accelerator.is_main_process:
        write_evaluation_report(
            results,
            run.output_dir / "eval",
            model=run.unwrapped,
            datasets=run.val_sets,
            mapillary_crop=config.mapillary_crop,
            eval_sizes=run.eval_sizes,
            metadata={"step": run.step, "recipe": run.recipe, "checkpoint": "last iteration", "eval_select_on": config.eval_select_on},
            protocol=config.eval_protocol_spec(),
        )
        training = training_card_fields(config, run.unwrapped.config, num_processes=accelerator.num_processes,
                                        hardware=_hardware(accelerator), training_time=timing["training_time_s"],
                                        training_time_from_step=timing["training_time_from_step"])  # fmt: skip
        publish_trained_model(run.unwrapped, model_dir, config=config, recipe=run.recipe, results=results, training=training)
        write_all_results(run.output_dir / "all_results.json", results, source=config.source_dataset, step=run.step, timing=timing)
        print_results_table(results, config.source_dataset)
    accelerator.wait_for_everyone()
    if config.push_to_hub and accelerator.is_main_process:
        url = push_model_folder(model_dir, config.hub_model_id, private=config.hub_private)
        _log(accelerator, f"pushed {model_dir} to {config.hub_model_id}: {url}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return {"status": "completed", "step": run.step, "results": results, "model_dir": str(model_dir)}


__all__ = ["NonFiniteLossError", "TrainingRun", "train", "setup", "train_loop", "training_step", "finish", "target_mean"]
