#!/usr/bin/env bash
# The package as users install it: build a wheel, install it into a fresh virtual environment away
# from the source tree, and train 2 steps on the embedded synthetic benchmark through to a published
# model folder with its model card, once through the API and once with the installed `srha-train`; then
# `srha-predict` segments an image with that model. Fails if anything is read from the source checkout.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/srha-wheel-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "== wheel check in $WORK"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --upgrade pip
"$WORK/venv/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$REPO"
"$WORK/venv/bin/python" -m pip install --quiet "$WORK"/dist/srha_hf-*.whl

cd "$WORK"  # nothing of the checkout on sys.path from here on
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 "$WORK/venv/bin/python" - "$REPO" <<'PY'
import sys
from pathlib import Path

repo = Path(sys.argv[1]).resolve()
import srha_hf
from srha_hf.training import load_config
from srha_hf.training.trainer import train

where = Path(srha_hf.__file__).resolve()
assert repo not in where.parents, f"srha_hf was imported from the checkout ({where}), not from the wheel"
config = load_config(None, {
    "synthetic_data": True, "synthetic_root": "synthetic", "synthetic_num_train": 4, "synthetic_num_val": 2,
    "synthetic_size": [128, 72], "backbone": "shufflenetv2", "backbone_pretrained": None, "crop_size": 64,
    "batch_size": 2, "class_uniform_tile": 64, "max_iter": 2, "checkpointing_steps": 0, "eval_steps": 0,
    "val_datasets": ["cityscapes"], "eval_max_images": 1, "num_workers": 0, "report_to": "none",
    "output_dir": "run",
})
outcome = train(config, recipe="wheel-check")
assert outcome["status"] == "completed", outcome
model = Path("run/model")
found = sorted(p.name for p in model.iterdir())
assert found == ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"], found
card = (model / "README.md").read_text()
assert "srha_hf" in card and "cityscapes" in card.lower(), card[:500]
print(f"wheel check: srha_hf {srha_hf.__version__} from {where.parent}; published {model.resolve()} with its model card")
PY

# the installed command-line tools
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
"$WORK/venv/bin/srha-train" --synthetic_data true --synthetic_root synthetic --synthetic_num_train 4 --synthetic_num_val 2 \
    --synthetic_size "[128, 72]" --backbone shufflenetv2 --backbone_pretrained null --crop_size 64 --batch_size 2 \
    --class_uniform_tile 64 --max_iter 2 --checkpointing_steps 0 --eval_steps 0 --val_datasets cityscapes --eval_max_images 1 \
    --num_workers 0 --report_to none --output_dir run_cli > train_cli.log 2>&1 || { tail -40 train_cli.log; exit 1; }
test -f run_cli/model/model.safetensors
image="$(find synthetic/cityscapes -name '*_leftImg8bit.png' | head -n 1)"
"$WORK/venv/bin/srha-predict" --model run_cli/model --input "$image" --output predictions --device cpu > predict_cli.log 2>&1 || { cat predict_cli.log; exit 1; }
test -n "$(find predictions -name '*_labelTrainIds.png')"
echo "wheel check: srha-train trained 2 steps and srha-predict wrote $(find predictions -name '*.png' | wc -l) files for $(basename "$image")"
