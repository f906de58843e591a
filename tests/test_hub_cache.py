"""from_pretrained("org/name") for model and processor from a Hugging Face cache folder, offline."""

import os
import subprocess
import sys

import pytest
import torch
from huggingface_hub import scan_cache_dir
from interop_helpers import REPO, hf_cache_layout, random_image, save_model
from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation

import srha_hf  # noqa: F401 - registers the Auto classes
from srha_hf.inference import ModelLoadError, load_segmenter

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread

REPO_ID = "srha-test-org/srha-shufflenetv2-demo"
COMMIT = "4f5e3d2c1b0a99887766554433221100ffeeddcc"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    model = save_model(root / "saved", "shufflenetv2", seed=5)
    hf_cache_layout(root / "saved", root / "cache", REPO_ID, COMMIT)
    return root, model


def test_layout_is_huggingface_hubs(cache):
    root, _ = cache
    info = scan_cache_dir(root / "cache")
    assert not info.warnings
    (repo,) = info.repos
    assert repo.repo_id == REPO_ID and repo.repo_type == "model" and set(repo.refs) == {"main"}
    (revision,) = repo.revisions
    assert revision.commit_hash == COMMIT
    assert {f.file_name for f in revision.files} == {"config.json", "model.safetensors", "preprocessor_config.json"}


@pytest.mark.parametrize("revision", [None, COMMIT])
def test_from_pretrained_by_repo_id_offline(cache, no_network, revision):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    root, model = cache
    kwargs = {"cache_dir": str(root / "cache"), "revision": revision}
    config = AutoConfig.from_pretrained(REPO_ID, **kwargs)
    loaded = AutoModelForSemanticSegmentation.from_pretrained(REPO_ID, **kwargs).eval()
    processor = AutoImageProcessor.from_pretrained(REPO_ID, **kwargs)
    assert config.model_type == "srha" and config.backbone == "shufflenetv2"
    assert type(loaded).__name__ == "SRHAForSemanticSegmentation" and type(processor).__name__ == "SRHAImageProcessor"
    expected = model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())


def test_uncached_repo_fails_clearly_offline(cache, no_network):
    root, _ = cache
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        load_segmenter("srha-test-org/not-downloaded", device="cpu", cache_dir=str(root / "cache"))


@pytest.mark.slow  # a subprocess / torchrun test
def test_predict_script_with_repo_id_from_HF_HUB_CACHE(cache, tmp_path):
    """The user's flow: HF_HUB_CACHE + HF_HUB_OFFLINE=1 in the environment, a repo id on the command line."""
    root, _ = cache
    random_image(tmp_path / "in" / "x.png", 48, 64, 0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HUB_CACHE=str(root / "cache"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf_home"))
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "predict.py"), "--model", REPO_ID, "--input", str(tmp_path / "in"),
         "--output", str(tmp_path / "out"), "--device", "cpu", "--no_progress", "--threads", "1"],  # fmt: skip
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "x_labelTrainIds.png").is_file()
    assert not (tmp_path / "hf_home").exists() or not any((tmp_path / "hf_home").rglob("*.safetensors"))
