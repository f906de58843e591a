"""The SRHA training loop (docs/method.md §3.5, §5, §7.3, §8.3-8.5) on Accelerate.

``train(config)`` runs one recipe: the student and the frozen ImageNet teacher through
:func:`srha_hf.compute_srha_loss`, SGD with the encoder/decoder groups and the per-iteration poly
schedule, class-uniform epochs identical on every process, periodic and final evaluation on the target
domains, checkpoints written atomically and resumable exactly, and the published model folder.

Determinism (DESIGN.md): the data order is a pure function of the epoch, every augmentation and the
student's SRM weights of ``(seed, epoch, sample index)``, and the step's other draws (dsn dropout, the
teacher's SRM weights) of ``(seed, step, process)``. So a resumed run replays what an uninterrupted one
would have done.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import signal
import time
from pathlib import Path
from typing import Dict

import torch

from ..atomic import publish_dir
from ..data.labels import BENCHMARK_NAMES
from .checkpoint import list_checkpoints, load_checkpoint, resolve_checkpoint, save_checkpoint, write_json_atomic
from .config import ConfigError, TrainConfig, save_config
from .optim import build_optimizer, set_poly_lr
from .precision import describe as describe_precision
from .precision import resolve_mixed_precision


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
    return f"{accelerator.num_processes} CPU process(es) on {os.cpu_count()} cores ({platform.machine()})"


def resolve_data(config: TrainConfig, accelerator) -> tuple:
    """Data roots per dataset (generating the synthetic benchmark when asked) and evaluation sizes.

    Every root the run needs is checked before any work, naming the config key to set."""
    eval_sizes = None
    roots = {name: config.data_root(name) for name in BENCHMARK_NAMES}
    if config.synthetic_data:
        from ..data.synthetic import make_synthetic_benchmark, synthetic_eval_sizes

        size = tuple(config.synthetic_size)
        if accelerator.is_main_process:
            _log(accelerator, f"synthetic benchmark in {config.synthetic_root} (generated on first use, then reused)")
            make_synthetic_benchmark(
                config.synthetic_root, num_train=config.synthetic_num_train, num_val=config.synthetic_num_val, size=size
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
    if final or not config.eval_first_dataset_only:
        return val_sets
    first = next(iter(val_sets))
    return {first: val_sets[first]}


def train(config: TrainConfig, recipe: str = "custom") -> Dict[str, object]:
    """Run one training job; returns ``{"status", "step", "results", "model_dir"}``.

    ``status`` is ``"completed"`` or ``"interrupted"`` (SIGTERM: a checkpoint was saved). A non-finite
    loss raises :class:`NonFiniteLossError` naming the step; the last good checkpoint stays."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    from .. import SRHAForSemanticSegmentation, build_teacher, compute_srha_loss, update_teacher_ema
    from ..data import SRHATrainDataset, SRMCollator, build_train_transform, describe_dataset, load_benchmark
    from ..data.uniform import EpochSampler
    from ..evaluation import evaluate_model, write_evaluation_report
    from ..objective import pc_warmup_factor, uses_teacher

    backbone_init = config.backbone_pretrained
    if config.pretrain_steps > 0:  # before this run's Accelerator: the stage is a run of its own
        from accelerate import PartialState

        from .pretrain import ensure_pretrained_backbone

        main = PartialState().is_main_process
        backbone_init = str(ensure_pretrained_backbone(config, log=lambda m: main and print(f"[srha] {m}", flush=True)))

    set_cudnn_determinism(config.deterministic)
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
    world, rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
    _log(accelerator, f"precision: {describe_precision(accelerator.mixed_precision)} ({precision_source})")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, output_dir / "train_config.yaml")
    accelerator.wait_for_everyone()

    # ---------------- data: everything is checked before any heavy work
    roots, eval_sizes = resolve_data(config, accelerator)
    def load(name: str, split: str):
        return load_benchmark(name, roots[name], split, split_file=config.split_file_for(name, split),
                              size_mismatch=config.size_mismatch)  # fmt: skip

    source = load(config.source_dataset, config.train_split)
    _log(accelerator, f"source: {describe_dataset(source)}")
    val_sets = {name: load(name, config.val_split) for name in config.val_datasets}
    if config.eval_source and config.source_dataset not in val_sets:  # last, so periodic evaluations skip it
        val_sets[config.source_dataset] = load(config.source_dataset, config.val_split)
    resume_path = resolve_checkpoint(output_dir, config.resume_from_checkpoint)
    if config.resume_from_checkpoint == "latest" and resume_path is None:
        _log(accelerator, f"no checkpoint in {output_dir} yet: starting fresh")

    transform = build_train_transform(**train_transform_kwargs(config))

    def make_train_set():
        return SRHATrainDataset(
            source,
            transform,
            seed=config.seed,
            class_uniform=config.class_uniform,
            pct=config.class_uniform_pct,
            tile=config.class_uniform_tile,
            whole_tiles_only=config.class_uniform_whole_tiles_only,
            cache_dir=config.centroid_cache_dir or str(output_dir / "centroids"),
            progress=accelerator.is_main_process,
        )

    # The main process extracts (and caches) the class-uniform centroids; the others then read the cache.
    train_set = make_train_set() if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    if train_set is None:
        train_set = make_train_set()
    # docs/method.md §7.3: the permutation is seeded with the epoch number alone, the same on every process.
    sampler = EpochSampler(train_set, num_replicas=world, rank=rank, seed=0, pad=True, yield_epoch=True)
    model_config = config.model_config(backbone_pretrained=backbone_init)
    collator = SRMCollator(seed=config.seed, concentration=model_config.srm_concentration)

    # ---------------- models and optimiser
    set_seed(config.seed)
    student = SRHAForSemanticSegmentation(model_config)
    # The teacher starts as a copy of the student's initial weights (the same ImageNet or stand-in
    # backbone); rows of the ablation without any alignment term train without a teacher.
    teacher = build_teacher(student.config, student) if uses_teacher(model_config) else None
    if world > 1 and device.type == "cuda":  # SyncBN only on multi-GPU CUDA runs
        student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)
        if teacher is not None:
            teacher = torch.nn.SyncBatchNorm.convert_sync_batchnorm(teacher)
        student.train()
    if teacher is not None:
        teacher.to(device)
    optimizer = build_optimizer(student, config.lr, config.decoder_lr, config.momentum, config.weight_decay)
    student, optimizer = accelerator.prepare(student, optimizer)
    if teacher is not None and model_config.teacher_ema_alpha < 1.0:
        accelerator.register_for_checkpointing(teacher)
    unwrapped = accelerator.unwrap_model(student)

    step, epoch, batch_in_epoch = 0, 0, 0
    if resume_path is not None:
        state = load_checkpoint(accelerator, resume_path)
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        _log(accelerator, f"resumed from {resume_path} at step {step} (epoch {epoch}, batch {batch_in_epoch})")

    if trackers:
        flat = {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v)) for k, v in config.to_dict().items()}
        accelerator.init_trackers("srha", config={k: v for k, v in flat.items() if v is not None})

    def trainer_state() -> dict:
        return {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "config": config.to_dict(), "recipe": recipe}

    def checkpoint() -> Path:
        path = save_checkpoint(accelerator, output_dir, step, trainer_state(), config.checkpoints_total_limit)
        _log(accelerator, f"saved {path}")
        return path

    def run_evaluation(final: bool) -> Dict[str, dict]:
        subset = _eval_subset(config, val_sets, final)
        results = evaluate_model(
            unwrapped,
            subset,
            accelerator=accelerator,
            batch_size=config.eval_batch_size,
            mixed_precision=None if accelerator.mixed_precision == "no" else accelerator.mixed_precision,
            mapillary_crop=config.mapillary_crop,
            eval_sizes=eval_sizes,
            progress=accelerator.is_main_process,
            max_images=config.eval_max_images,
            drop_remainder=config.eval_drop_remainder,
        )
        unwrapped.train()
        if trackers:
            accelerator.log(
                {f"{name}/{key}": res[key] for name, res in results.items() for key in ("mean_iou", "mean_accuracy", "overall_accuracy")},
                step=step,
            )
        if accelerator.is_main_process:
            summary = ", ".join(f"{n} mIoU {r['mean_iou'] * 100:.2f}" for n, r in results.items())
            _log(accelerator, f"step {step}: {summary}")
        return results

    # ---------------- the loop
    batch_size = config.batch_size
    start_time = time.time()
    last_saved = step if resume_path is not None else None
    start_step = step
    results: Dict[str, dict] = {}
    status = "completed"
    progress = tqdm(total=config.max_iter, initial=step, desc="train", disable=not accelerator.is_main_process, dynamic_ncols=True)
    window = {"loss": 0.0, "count": 0, "terms": {}, "time": time.time(), "images": 0}
    unwrapped.train()

    with _Interrupt() as interrupt:
        while step < config.max_iter:
            sampler.set_epoch(epoch)
            keys = list(sampler)
            n_batches = len(keys) // batch_size
            if n_batches == 0:
                raise ConfigError(
                    f"{config.source_dataset} {config.train_split} has {len(train_set)} items: too few for "
                    f"batch_size={batch_size} on {world} process(es)"
                )
            batches = [keys[i * batch_size : (i + 1) * batch_size] for i in range(batch_in_epoch, n_batches)]
            loader = torch.utils.data.DataLoader(
                train_set,
                batch_sampler=batches,
                collate_fn=collator,
                num_workers=config.num_workers,
                pin_memory=device.type == "cuda",
            )
            for batch in loader:
                lrs = set_poly_lr(optimizer, step, config.max_iter, config.poly_power)
                seed = _step_seed(config.seed, step, rank)
                torch.manual_seed(seed)  # dsn dropout
                generator = torch.Generator(device=device).manual_seed(seed)  # the teacher's SRM draws
                pixel_values = batch["pixel_values"].to(device, non_blocking=True)
                labels = batch["labels"].to(device, non_blocking=True)
                srm_weights = batch["srm_weights"].to(device, non_blocking=True)
                if teacher is not None:  # as the reference: before the forward (step 0 copies the initial student)
                    update_teacher_ema(teacher, unwrapped, step, model_config.teacher_ema_alpha)
                pc_scale = pc_warmup_factor(step, config.pc_warmup_steps)  # a function of the step: resume-exact
                with accelerator.autocast():
                    loss, terms = compute_srha_loss(
                        student, teacher, pixel_values, labels, srm_weights=srm_weights, generator=generator, pc_scale=pc_scale
                    )
                mean_loss = accelerator.reduce(loss.detach().float(), "mean")
                if not torch.isfinite(mean_loss):
                    bad = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                    latest = list_checkpoints(output_dir)
                    raise NonFiniteLossError(
                        f"non-finite loss ({mean_loss.item()}) at step {step + 1} ({bad}); stopping. "
                        f"Last good checkpoint: {latest[-1] if latest else 'none'}"
                    )
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                batch_in_epoch += 1
                progress.update(1)

                window["loss"] += mean_loss.item()
                window["count"] += 1
                window["images"] += batch_size * world
                for k, v in terms.items():  # kept on the device: no host synchronisation per term
                    window["terms"][k] = window["terms"].get(k, 0.0) + v.float()
                if step % config.logging_steps == 0 or step == config.max_iter:
                    elapsed = max(time.time() - window["time"], 1e-9)
                    logs = {
                        "train/loss": window["loss"] / window["count"],
                        "train/lr_encoder": lrs[0],
                        "train/lr_decoder": lrs[1],
                        "train/images_per_s": window["images"] / elapsed,
                        "train/it_per_s": window["count"] / elapsed,
                        "train/epoch": epoch,
                    }
                    term_means = torch.stack([window["terms"][k] / window["count"] for k in sorted(window["terms"])])
                    term_means = accelerator.reduce(term_means, "mean")
                    logs.update({f"train/{k}": v.item() for k, v in zip(sorted(window["terms"]), term_means)})
                    if "pc" in window["terms"]:  # the effective PC weight of the window's last step
                        logs["train/pc_weight"] = model_config.pc_weight * pc_scale
                    progress.set_postfix(loss=f"{logs['train/loss']:.3f}", lr=f"{lrs[1]:.2e}")
                    if trackers:
                        accelerator.log(logs, step=step)
                    window = {"loss": 0.0, "count": 0, "terms": {}, "time": time.time(), "images": 0}

                if config.checkpointing_steps and step % config.checkpointing_steps == 0:
                    checkpoint()
                    last_saved = step
                if config.eval_steps > 0 and step % config.eval_steps == 0 and step < config.max_iter:
                    run_evaluation(final=False)
                if config.debug_kill_at_step is not None and step == config.debug_kill_at_step:
                    os.kill(os.getpid(), signal.SIGKILL)
                if _any_process(accelerator, interrupt.requested):
                    status = "interrupted"
                    break
                if step >= config.max_iter:
                    break
            if status == "interrupted":
                break
            if batch_in_epoch >= n_batches:
                epoch += 1
                batch_in_epoch = 0
                if config.eval_steps == -1 and step < config.max_iter:
                    run_evaluation(final=False)

    progress.close()
    if status == "interrupted":
        if last_saved != step:
            checkpoint()
        _log(accelerator, f"SIGTERM: checkpoint saved at step {step}; resume with --resume_from_checkpoint latest")
        accelerator.end_training()
        return {"status": status, "step": step, "results": {}, "model_dir": None}

    training_time = time.time() - start_time
    steps_run = step - start_step
    it_per_s = steps_run / max(training_time, 1e-9)
    _log(accelerator, f"trained {steps_run} steps in {training_time:.1f} s ({it_per_s:.2f} it/s)")
    if config.checkpointing_steps and last_saved != step:
        checkpoint()
    results = run_evaluation(final=True)
    model_dir = output_dir / "model"
    if accelerator.is_main_process:
        write_evaluation_report(
            results,
            output_dir / "eval",
            model=unwrapped,
            datasets=val_sets,
            mapillary_crop=config.mapillary_crop,
            eval_sizes=eval_sizes,
            metadata={"step": step, "recipe": recipe},
        )
        _publish(config, recipe, unwrapped, results, model_dir, training_time, accelerator)
        write_json_atomic(
            output_dir / "all_results.json",
            {
                "step": step,
                "training_time_s": round(training_time, 1),
                "train_it_per_s": round(it_per_s, 4),
                "results": _plain(results),
                "mean_target_miou": _round_or_none(target_mean(results, config.source_dataset)),
            },
        )
        _print_table(results, config.source_dataset)
    accelerator.wait_for_everyone()
    if config.push_to_hub and accelerator.is_main_process:
        from ..hub import push_model_folder

        url = push_model_folder(model_dir, config.hub_model_id, private=config.hub_private)
        _log(accelerator, f"pushed {model_dir} to {config.hub_model_id}: {url}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return {"status": status, "step": step, "results": results, "model_dir": str(model_dir)}


def _plain(results: Dict[str, dict]) -> Dict[str, dict]:
    """Results without the bulky confusion matrices, NaN as null (valid JSON)."""

    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    return {name: clean({k: v for k, v in res.items() if k != "confusion_matrix"}) for name, res in results.items()}


def target_mean(results: Dict[str, dict], source: str) -> float:
    """Mean mIoU (in %) over the target domains of ``results`` (the source's own val split excluded)."""
    targets = [r["mean_iou"] for name, r in results.items() if name != source]
    return float(sum(targets) / len(targets) * 100) if targets else float("nan")


def _round_or_none(value: float):
    return None if math.isnan(value) else round(value, 2)


def _print_table(results: Dict[str, dict], source: str) -> None:
    print("\n| domain | images | mIoU |\n|---|---|---|")
    for name, res in results.items():
        label = f"{name} (source val)" if name == source else name
        print(f"| {label} | {res.get('num_images', '?')} | {res['mean_iou'] * 100:.2f} |")
    if any(name != source for name in results):
        print(f"| **mean over targets** | | **{target_mean(results, source):.2f}** |")
    print(flush=True)


def _publish(config: TrainConfig, recipe: str, model, results, model_dir: Path, training_time: float, accelerator) -> None:
    """Write ``model_dir`` (config, safetensors, processor, model card) atomically."""
    from .. import SRHAImageProcessor
    from ..hub import render_model_card

    tmp = model_dir.with_name(f".{model_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    SRHAImageProcessor().save_pretrained(tmp)
    cfg = model.config
    card = render_model_card(
        results,
        model_name=config.hub_model_id or f"srha-{config.backbone}-{config.source_dataset}",
        backbone=config.backbone,
        source_dataset=config.source_dataset,
        recipe=recipe,
        repo_or_path=config.hub_model_id or str(model_dir),
        val_split=config.val_split,
        decode_head=cfg.decode_head,
        training={
            "train_split": config.train_split,
            "synthetic": config.synthetic_data,
            "backbone_init": (
                f"pretraining stage ({config.pretrain_steps} plain steps on the source; {cfg.backbone_pretrained_source})"
                if config.pretrain_steps
                else cfg.backbone_pretrained_source or "random (no ImageNet weights)"
            ),
            "max_iter": config.max_iter,
            "lr": config.lr,
            "decoder_lr": config.decoder_lr,
            "batch_size": config.batch_size,
            "num_processes": accelerator.num_processes,
            "crop_size": config.crop_size,
            "concentration": cfg.srm_concentration,
            "pc_weight": cfg.pc_weight,
            "teacher_mode": cfg.teacher_mode,
            "training_time": f"{training_time / 3600:.2f} h" if training_time > 3600 else f"{training_time:.0f} s",
            "hardware": _hardware(accelerator),
        },
    )
    card.save(str(tmp / "README.md"))
    publish_dir(tmp, model_dir)
