"""scripts/app.py, the browser demo: legend and pixel-share table, the synthetic examples, the prediction
path (the one of scripts/predict.py), argument errors, and the page itself in headless Chromium."""

import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from interop_helpers import REPO, load_script, save_model
from PIL import Image

from srha_hf.browser_demo import SegmentationDemo, class_table, example_images, legend_html, make_example_images
from srha_hf.data.labels import CITYSCAPES_PALETTE, CLASS_NAMES
from srha_hf.data.synthetic import make_synthetic_benchmark, render_sample
from srha_hf.inference import collect_inputs, colorize, load_segmenter, overlay, predict_files, predict_image, read_image

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread

#: Set to a path (e.g. docs/images/browser_demo.png) to keep the browser test's screenshot there, and
#: SRHA_DEMO_MODEL to a trained model folder to show that model instead of a random one.
SCREENSHOT_ENV, MODEL_ENV = "SRHA_DEMO_SCREENSHOT", "SRHA_DEMO_MODEL"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("app_models")
    save_model(root / "m1", "shufflenetv2", seed=0)
    save_model(root / "m2", "shufflenetv2", seed=1)
    return root / "m1", root / "m2"


def test_class_table_and_legend():
    mask = np.array([[13, 13, 13, 0], [0, 13, 10, 0], [0, 0, 13, 13]], dtype=np.uint8)  # 6 car, 5 road, 1 sky
    rows = class_table(mask, dict(enumerate(CLASS_NAMES)), 19)
    assert rows == [["car", 13, "#00008e", 6, 50.0], ["road", 0, "#804080", 5, 41.67], ["sky", 10, "#4682b4", 1, 8.33]]
    tied = class_table(np.array([[2, 1], [1, 2]], dtype=np.uint8), {1: "a", 2: "b"}, 3)
    assert [r[:2] for r in tied] == [["a", 1], ["b", 2]]  # equal shares: by train ID
    html = legend_html(rows + [["<b>&", 19, "#010203", 1, 0.1]])
    assert html.count('class="srha-legend-item"') == 4
    assert '<span class="srha-legend-item" data-class="car" data-train-id="13"><span class="srha-swatch" style="background:#00008e">' in html
    assert 'data-class="&lt;b&gt;&amp;"' in html and "<b>" not in html  # names are escaped
    assert legend_html([]) == '<div class="srha-legend"></div>'


def test_examples_are_the_synthetic_benchmark_images(tmp_path):
    size = (160, 88)
    make_synthetic_benchmark(tmp_path / "bench", num_train=3, num_val=1, size=size)
    paths = make_example_images(tmp_path / "ex", size=size)
    assert [p.name for p in paths] == [f"{d}_val_0.png" for d in ("gtav", "cityscapes", "bdd100k", "mapillary", "synthia")]
    written = {  # the lossless (PNG) domains of the benchmark: its first validation image, bit for bit
        "gtav": tmp_path / "bench/gtav/images/valid/01/00004.png",
        "cityscapes": tmp_path / "bench/cityscapes/leftImg8bit_trainvaltest/leftImg8bit/val/frankfurt/frankfurt_000000_000000_leftImg8bit.png",
        "synthia": tmp_path / "bench/synthia/RGB/val/0000003.png",
    }
    for domain, path in written.items():
        assert np.array_equal(np.asarray(Image.open(tmp_path / "ex" / f"{domain}_val_0.png")), np.asarray(Image.open(path))), domain
    mapillary = np.asarray(Image.open(paths[3]))
    assert np.array_equal(mapillary, render_sample("mapillary", "val", 0, 160, 120)[1])  # Mapillary's 4:3 at the same width
    before = paths[0].stat().st_mtime_ns
    assert make_example_images(tmp_path / "ex", size=size) == paths and paths[0].stat().st_mtime_ns == before  # kept
    assert not [p for p in (tmp_path / "ex").iterdir() if ".tmp" in p.name]

    assert example_images(None, tmp_path / "ex") == paths
    assert example_images(tmp_path / "ex") == sorted(paths)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="examples folder .*empty holds no images"):
        example_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="examples folder .*missing does not exist"):
        example_images(tmp_path / "missing")


@pytest.mark.integration
def test_segment_is_the_prediction_of_predict_py(models, tmp_path):
    """The demo's mask, colours and overlay are exactly scripts/predict.py's files for the same image."""
    path = make_example_images(tmp_path / "ex", size=(128, 72))[1]
    demo = SegmentationDemo({"one": load_segmenter(models[0], device="cpu"), "two": load_segmenter(models[1], device="cpu")},
                            alpha=0.4, max_size=100)  # fmt: skip
    result = demo.segment(path, "two")
    predict_files(demo.segmenters["two"], collect_inputs(path).items, tmp_path / "out", max_size=100, alpha=0.4, progress=False)
    stem = tmp_path / "out" / path.stem
    assert np.array_equal(result.mask, np.asarray(Image.open(f"{stem}_labelTrainIds.png")))
    assert np.array_equal(result.color, np.asarray(Image.open(f"{stem}_color.png")))
    assert np.array_equal(result.overlay, np.asarray(Image.open(f"{stem}_overlay.png")))
    assert result.mask.shape == (64, 128) and result.overlay.shape == (64, 128, 3)  # Cityscapes: 2:1
    assert result.rows == class_table(result.mask, demo.segmenters["two"].id2label, 19)
    assert sum(r[3] for r in result.rows) == 64 * 128
    assert "**two** (pytorch on cpu): image 128x64, model input 100x50" in result.status

    again = demo.segment(path, "two", alpha=1.0)  # only the opacity changed: no new forward
    assert again.status.endswith("cached") and np.array_equal(again.mask, result.mask)
    assert np.array_equal(again.overlay, np.asarray(CITYSCAPES_PALETTE, dtype=np.uint8)[result.mask])
    other = demo.segment(path)  # the first model by default
    assert np.array_equal(other.mask, predict_image(demo.segmenters["one"], read_image(path), max_size=100))
    assert not np.array_equal(other.mask, result.mask)

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ValueError, match=r"broken.png: not a readable image"):
        demo.segment(tmp_path / "broken.png")
    with pytest.raises(KeyError, match=r"unknown model 'three' \(the demo has one, two\)"):
        demo.segment(path, "three")
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 1.5"):
        SegmentationDemo(demo.segmenters, alpha=1.5)


@pytest.mark.integration
def test_script_argument_errors(models, tmp_path, capsys):
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    script = load_script("app")
    cases = [
        (["--model", str(tmp_path / "nowhere")], f"error: model folder {tmp_path / 'nowhere'} does not exist"),
        (["--model", str(tmp_path)], f"error: {tmp_path} is not a model folder: no config.json in it"),
        (["--model", str(models[0]), "--model", str(models[0])], f"error: --model {models[0]} is given more than once"),
        (["--model", str(models[0]), "--port", "70000"], "error: --port must be in 1..65535, got 70000"),
        (["--model", str(models[0]), "--examples", str(tmp_path / "none")], f"error: examples folder {tmp_path / 'none'} does not exist"),
    ]
    for argv, message in cases:
        assert script.main(argv + ["--device", "cpu"]) == 2, argv
        assert message in capsys.readouterr().err, argv


# --------------------------------------------------------------------------------------------------
# The page in a real browser
# --------------------------------------------------------------------------------------------------


def _unavailable(message: str):
    """Skip, or fail where ``SRHA_REQUIRE_BROWSER`` is set (.ci/run sets it: CI must run the browser test)."""
    if os.environ.get("SRHA_REQUIRE_BROWSER"):
        pytest.fail(f"{message} (SRHA_REQUIRE_BROWSER is set)")
    pytest.skip(message)


def _browser_or_skip():
    for module, extra in (("gradio", "app"), ("selenium", "test")):
        try:
            __import__(module)
        except ImportError:
            _unavailable(f"the browser test needs {module}: pip install -e '.[{extra}]'")
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        _unavailable(f"the browser test needs Chromium and its driver (found browser={browser}, chromedriver={driver}): "
                     "apt-get install chromium chromium-driver")  # fmt: skip
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1150"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(driver))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_app(argv, env, log: Path, cwd: Path, timeout: float = 60):
    """scripts/app.py in a subprocess; returns it and the URL it printed."""
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "app.py"), *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=stderr, text=True)  # fmt: skip
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                raise AssertionError(f"scripts/app.py exited with {proc.returncode}:\n{log.read_text()}") from None
            continue
        if line.startswith("browser demo running on "):
            return proc, line.split(" on ", 1)[1].split()[0]
    proc.kill()
    raise AssertionError(f"scripts/app.py printed no URL within {timeout} s:\n{log.read_text()}")


def _fetch_png(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=20) as response:
        return np.asarray(Image.open(BytesIO(response.read())))


def _save_screenshot(driver, path: Path) -> None:
    """A palette PNG of the page (small enough to commit)."""
    shot = Image.open(BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    shot = shot.resize((shot.width * 3 // 4, shot.height * 3 // 4), Image.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    shot.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


@pytest.mark.slow
def test_browser_demo(models, tmp_path):
    """Headless Chromium opens the page, uploads an image, then switches model and clicks an example: each
    time the overlay and colour mask are the library's, at the image's size, and the legend lists exactly
    the predicted classes; a screenshot is saved."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser_or_skip()
    # The app runs in tmp_path and gets the models by relative paths, which are also the dropdown's labels.
    first, second = ("srha-synthetic-gtav", "random-init") if os.environ.get(MODEL_ENV) else ("random-init", "random-init-2")
    os.symlink(Path(os.environ.get(MODEL_ENV) or models[0]).resolve(), tmp_path / first)
    os.symlink(models[1], tmp_path / second)
    examples = make_example_images(tmp_path / "examples", size=(192, 106))
    upload = tmp_path / "street.png"  # not an example: a Cityscapes-like scene of another size
    Image.fromarray(render_sample("cityscapes", "val", 1, 320, 160)[1]).save(upload)
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", GRADIO_TEMP_DIR=str(tmp_path / "gradio"), OMP_NUM_THREADS="1")
    argv = ["--model", first, "--model", second, "--device", "cpu", "--port", str(_free_port()), "--examples", "examples", "--threads", "1"]
    proc = None
    try:
        proc, url = _start_app(argv, env, tmp_path / "app.log", cwd=tmp_path)
        assert url.startswith("http://127.0.0.1:")
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#srha-input input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "#srha-input input[type=file]").send_keys(str(upload))
        src = _check_result(driver, wait, tmp_path, first, upload, screenshot=tmp_path / "browser_demo.png")

        driver.find_element(By.CSS_SELECTOR, "#srha-model input").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"[role=option][aria-label='{second}']"))[0].click()
        src = _check_result(driver, wait, tmp_path, second, upload, previous_src=src)

        driver.find_elements(By.CSS_SELECTOR, ".gallery button")[3].click()  # the Mapillary example (4:3)
        _check_result(driver, wait, tmp_path, second, examples[3], previous_src=src)
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copyfile(tmp_path / "browser_demo.png", os.environ[SCREENSHOT_ENV])
    finally:
        driver.quit()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, (tmp_path / "app.log").read_text()  # SIGTERM: closed like Ctrl+C


def _check_result(driver, wait, cwd: Path, model: str, image_path: Path, previous_src=None, screenshot=None) -> str:
    """Wait for the result of ``model`` (a folder in ``cwd``) on ``image_path`` (a new overlay, not ``previous_src``), check it;
    returns the overlay's URL."""
    from selenium.webdriver.common.by import By

    segmenter = load_segmenter(cwd / model, device="cpu")
    image = read_image(image_path)
    mask = predict_image(segmenter, image)  # the library path of scripts/predict.py
    expected = [segmenter.id2label[int(k)] for k in np.unique(mask)]
    status = f"{model} (pytorch on cpu): image {image.width}x{image.height}"
    wait.until(lambda d: status in d.find_element(By.CSS_SELECTOR, "#srha-status").text)
    legend = [e.get_attribute("data-class") for e in driver.find_elements(By.CSS_SELECTOR, "#srha-legend [data-class]")]
    assert sorted(legend) == sorted(expected), (legend, expected)
    assert legend == [row[0] for row in class_table(mask, segmenter.id2label, segmenter.num_labels)]  # largest share first
    rows = driver.find_element(By.CSS_SELECTOR, "#srha-table [role=grid]").get_attribute("aria-rowcount")
    assert int(rows) == len(expected) + 1  # header + one row per class

    loaded = "const i = document.querySelector(arguments[0]); return i && i.complete && i.src !== arguments[1] ? i.naturalWidth : 0"
    wait.until(lambda d: d.execute_script(loaded, "#srha-overlay img", previous_src or ""))
    over = driver.find_element(By.CSS_SELECTOR, "#srha-overlay img")
    assert driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", over) == [image.width, image.height]
    shown = _fetch_png(over.get_attribute("src"))
    assert np.array_equal(shown, overlay(np.asarray(image), mask, 0.5, segmenter.num_labels))
    color = _fetch_png(driver.find_element(By.CSS_SELECTOR, "#srha-color img").get_attribute("src"))
    assert np.array_equal(color, colorize(mask, segmenter.num_labels))
    if screenshot is not None:
        _save_screenshot(driver, screenshot)
        assert screenshot.stat().st_size < 150_000
    return over.get_attribute("src")
