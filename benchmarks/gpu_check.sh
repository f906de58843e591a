#!/usr/bin/env bash
# The GPU checks of this repository in one run, from the repository root (used on the lent H100/H200 machine;
# see benchmarks/README.md): the CUDA correctness tests (pytest -m gpu, tests/test_gpu.py), then the GPU timings.
# Wheels for packages missing or too old there are expected in .whl/. Writes its logs to ${OUT:-/tmp/srha_gpu}.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/srha_gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    $(ls .whl/*.whl | grep -v huggingface_hub) || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))"
timeout 400 python3 -m pytest -m gpu -q -s -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
for args in "--crop 256 --batch 2" "--crop 768 --batch 4" "--crop 768 --batch 4 --amp bf16"; do
  timeout 120 python3 -m benchmarks.bench_step --repeats 7 $args 2>&1 | tee -a "$OUT/bench_step.log"
done
# the cost of the deterministic key (cuDNN deterministic vs autotuned), fp32 and bf16 at the recipe's size
for args in "--crop 768 --batch 4" "--crop 768 --batch 4 --amp bf16"; do
  timeout 150 python3 -m benchmarks.bench_deterministic --repeats 7 $args 2>&1 | tee -a "$OUT/bench_deterministic.log"
done
# the SRM / RA timings and the evaluation throughput on the GPU
timeout 120 python3 -m benchmarks.bench_srm 2>&1 | tee "$OUT/bench_srm.log"
timeout 120 python3 -m benchmarks.bench_ra 2>&1 | tee "$OUT/bench_ra.log"
OUT="$OUT" timeout 600 python3 -m benchmarks.bench_eval_gpu 2>&1 | tee "$OUT/bench_eval_gpu.log"
# the training script on CUDA with bf16 autocast: a short demo run with an evaluation in the middle
timeout 300 python3 -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision bf16 \
  --dynamo_backend no scripts/train.py --config configs/demo.yaml --max_iter 60 --eval_steps 30 \
  --checkpointing_steps 30 --num_workers 4 --report_to tensorboard --output_dir /tmp/demo_gpu \
  --synthetic_root /tmp/synthetic 2>&1 | tr '\r' '\n' | grep -v "^train:" | tee "$OUT/train_demo.log"
cp /tmp/demo_gpu/all_results.json "$OUT/" 2>/dev/null
cp /tmp/demo_gpu/model/README.md "$OUT/model_card.md" 2>/dev/null
ls /tmp/demo_gpu /tmp/demo_gpu/model | tee "$OUT/ls.txt"
