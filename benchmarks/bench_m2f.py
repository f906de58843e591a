"""The R50 + Mask2Former variant (docs/method.md §4) next to R50 DeepLabV3+: one SRHA training step and one
full-resolution inference.

* ``train_step``: ``compute_srha_loss`` (student on the SRM-doubled batch, frozen teacher, M2F set loss
  or CE + aux, GA/RA/LA, PC) + backward + SGD step, batch 2, crop 256 by default. For Mask2Former the
  step is also split into its parts: the student forward without the set loss, and the set loss alone
  (Hungarian matching and point sampling of the 10 prediction sets).
* ``inference``: ``model(pixel_values).logits`` in eval mode, no autograd, at 1024x2048 (Cityscapes).

Both models use the paper's sizes (100 queries, 9 decoder layers, 12544 points, ...). Median of
``--repeats`` runs after one warm-up, the two heads interleaved.

Usage: python -m benchmarks.bench_m2f [--crop 256] [--batch 2] [--height 1024 --width 2048] [--repeats 2]
"""

import argparse
import statistics

import torch

from benchmarks.common import emit, street_labels, time_call
from srha_hf import SRHAConfig, SRHAForSemanticSegmentation, build_teacher, compute_srha_loss
from srha_hf.heads.mask2former import mask2former_set_loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip_inference", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.crop, args.crop, generator=gen).to(device)
    labels = street_labels(args.batch, args.crop, gen, block=32).to(device)

    setups = {}
    for head in ("deeplabv3plus", "mask2former"):
        config = SRHAConfig(backbone="resnet50", decode_head=head)
        student = SRHAForSemanticSegmentation(config).to(device).train()
        teacher = build_teacher(config, device=device)
        optimizer = torch.optim.SGD(
            [p for p in student.parameters() if p.requires_grad], lr=1e-4, momentum=0.9, weight_decay=5e-4
        )
        setups[head] = (student, teacher, optimizer)

    def step_fn(head):
        student, teacher, optimizer = setups[head]

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss, _ = compute_srha_loss(student, teacher, x, labels)
            loss.backward()
            optimizer.step()

        return step

    student_m2f = setups["mask2former"][0]

    def m2f_forward_only():
        with torch.no_grad():
            return student_m2f(x, labels=None, output_features=True)

    with torch.no_grad():
        out = student_m2f(x, output_features=True)
    sets_cls = [p["class_queries_logits"] for p in out.auxiliary_predictions] + [out.class_queries_logits]
    sets_mask = [p["masks_queries_logits"] for p in out.auxiliary_predictions] + [out.masks_queries_logits]
    labels_2b = labels.repeat(2, 1, 1)
    sets_cls = [c.repeat(2, 1, 1) for c in sets_cls]
    sets_mask = [m.repeat(2, 1, 1, 1) for m in sets_mask]

    def m2f_set_loss_only():
        mask2former_set_loss(sets_cls, sets_mask, labels_2b, student_m2f.config)

    variants = {
        "deeplabv3plus_step": step_fn("deeplabv3plus"),
        "mask2former_step": step_fn("mask2former"),
        "mask2former_student_forward_2b_nograd": m2f_forward_only,
        "mask2former_set_loss_2b": m2f_set_loss_only,
    }
    samples = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in variants.items():
            samples[name].append(time_call(fn, 1, warmup=0, sync=sync))
    results = {f"{k}_s": round(statistics.median(v), 3) for k, v in samples.items()}
    results["m2f_over_deeplab_step"] = round(results["mask2former_step_s"] / results["deeplabv3plus_step_s"], 3)

    if not args.skip_inference:
        del setups
        image = torch.randn(1, 3, args.height, args.width, generator=gen).to(device)
        inf = {}
        for head in ("deeplabv3plus", "mask2former"):
            model = SRHAForSemanticSegmentation(SRHAConfig(backbone="resnet50", decode_head=head)).to(device).eval()

            def infer():
                with torch.no_grad():
                    logits = model(image).logits
                assert logits.shape == (1, 19, args.height, args.width)

            inf[head] = time_call(infer, repeats=args.repeats, warmup=1, sync=sync)
            del model
        results.update({f"{k}_inference_s": round(v, 3) for k, v in inf.items()})
        results["m2f_over_deeplab_inference"] = round(inf["mask2former"] / inf["deeplabv3plus"], 3)

    emit(
        "m2f",
        {
            "batch": args.batch,
            "crop": args.crop,
            "inference_size": None if args.skip_inference else [args.height, args.width],
            "device": str(device),
            **results,
        },
    )


if __name__ == "__main__":
    main()
