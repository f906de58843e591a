"""The browser demo that ``scripts/app.py`` serves (Gradio, the optional ``[app]`` extra).

An image (uploaded, or one of the examples) goes through :func:`srha_hf.inference.predict_image`, the
prediction of ``scripts/predict.py``: the page shows the overlay on the image, the colour mask
(:func:`srha_hf.visualization.colorize`, the Cityscapes palette of docs/method.md §6.2), a legend of the
classes present (name and colour) and a table of their pixel shares. Several models can be given; a
dropdown picks one. Everything but :func:`build_interface` works without Gradio.

The default examples are the first validation image of every domain of the synthetic benchmark
(:func:`srha_hf.data.synthetic.render_sample`, the files ``make_synthetic_benchmark`` writes with its
default size and seed), drawn on first use into a cache folder.
"""

from __future__ import annotations

import html
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .atomic import atomic_write
from .inference import collect_inputs, input_size, predict_image, read_image
from .visualization import colorize, overlay, palette_for

#: Most examples shown from an ``--examples`` folder (sorted, the first ones).
MAX_EXAMPLES = 24
#: The synthetic benchmark's default (W, H) of the source domain (``make_synthetic_benchmark``).
EXAMPLE_SIZE = (384, 212)
TABLE_HEADERS = ["class", "train ID", "colour", "pixels", "share (%)"]

__all__ = [
    "MAX_EXAMPLES",
    "TABLE_HEADERS",
    "DemoResult",
    "SegmentationDemo",
    "build_interface",
    "launch",
    "class_table",
    "default_examples_dir",
    "example_images",
    "legend_html",
    "make_example_images",
]


# --------------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------------


def default_examples_dir() -> Path:
    """``$SRHA_HF_CACHE`` (default ``$XDG_CACHE_HOME/srha_hf``, i.e. ``~/.cache/srha_hf``) ``/app_examples/synthetic_vN``,
    N being the synthetic benchmark's version (a new version draws new examples)."""
    from .data.synthetic import SYNTHETIC_VERSION

    base = os.environ.get("SRHA_HF_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "srha_hf")
    return Path(base) / "app_examples" / f"synthetic_v{SYNTHETIC_VERSION}"


def make_example_images(folder=None, size: Tuple[int, int] = EXAMPLE_SIZE, seed: int = 0) -> List[Path]:
    """``folder/<domain>_val_0.png`` for every synthetic domain (gtav, cityscapes, bdd100k, mapillary,
    synthia): the first validation image of a synthetic benchmark made with ``size`` ((W, H) of the source
    domain) and ``seed``, losslessly as PNG. Files already there are kept; new ones are written atomically."""
    from PIL import Image

    from .data.synthetic import DOMAINS, domain_size, render_sample

    folder = Path(folder) if folder is not None else default_examples_dir()
    paths = []
    for domain in DOMAINS:
        path = folder / f"{domain}_val_0.png"
        if not path.is_file():
            width, height = domain_size(domain, size, 0)
            _, image = render_sample(domain, "val", 0, width, height, seed)
            atomic_write(path, lambda tmp, image=image: Image.fromarray(image).save(tmp, format="PNG"))
        paths.append(path)
    return paths


def example_images(examples_dir=None, cache_dir=None) -> List[Path]:
    """The images of ``examples_dir`` (recursively, sorted, at most :data:`MAX_EXAMPLES`), or the synthetic
    examples of :func:`make_example_images` in ``cache_dir`` when no folder is given."""
    if examples_dir is None:
        return make_example_images(cache_dir)
    folder = Path(examples_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"examples folder {folder} does not exist (expected a folder of images)")
    items = collect_inputs(folder).items
    if not items:
        raise ValueError(f"examples folder {folder} holds no images")
    return [item.path for item in items[:MAX_EXAMPLES]]


# --------------------------------------------------------------------------------------------------
# Legend and table
# --------------------------------------------------------------------------------------------------


def class_table(mask: np.ndarray, id2label: Dict[int, str], num_labels: int) -> List[list]:
    """One row per class present in ``mask``: name, train ID, colour (``#rrggbb``), pixels and share of
    the image in percent (2 decimals), largest share first (ties by train ID)."""
    counts = np.bincount(np.asarray(mask, dtype=np.int64).ravel(), minlength=num_labels)
    present = np.flatnonzero(counts)
    order = present[np.lexsort((present, -counts[present]))]
    table = palette_for(num_labels)
    total = float(counts.sum())
    return [
        [id2label.get(int(k), str(int(k))), int(k), "#%02x%02x%02x" % tuple(int(c) for c in table[k]), int(counts[k]),
         round(100.0 * counts[k] / total, 2)]
        for k in order
    ]  # fmt: skip


def legend_html(rows: Sequence[list]) -> str:
    """The legend of :func:`class_table`'s rows: a colour swatch and the name of every class present, in
    table order (each entry carries ``data-class`` and ``data-train-id``)."""
    items = "".join(
        f'<span class="srha-legend-item" data-class="{html.escape(name, quote=True)}" data-train-id="{tid}">'
        f'<span class="srha-swatch" style="background:{colour}"></span>{html.escape(name)}</span>'
        for name, tid, colour, _, _ in rows
    )
    return f'<div class="srha-legend">{items}</div>'


LEGEND_CSS = """
.srha-legend { display: flex; flex-wrap: wrap; gap: 6px 14px; padding: 4px 2px; }
.srha-legend-item { display: inline-flex; align-items: center; gap: 6px; white-space: nowrap; }
.srha-swatch { width: 16px; height: 16px; border-radius: 3px; border: 1px solid #0004; display: inline-block; }
"""


# --------------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    overlay: np.ndarray  # (H, W, 3) uint8
    color: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 train IDs
    rows: List[list]  # class_table
    status: str


class SegmentationDemo:
    """The models of the demo (name -> segmenter of :func:`srha_hf.inference.load_segmenter`) and the
    prediction settings of ``scripts/predict.py`` (``resize`` / ``max_size``). The last mask is kept, so
    that moving the opacity slider does not predict again."""

    def __init__(self, segmenters: Dict[str, object], alpha: float = 0.5, resize=None, max_size: Optional[int] = None):
        if not segmenters:
            raise ValueError("the demo needs at least one model")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.segmenters = dict(segmenters)
        self.alpha = alpha
        self.resize = resize
        self.max_size = max_size
        self._lock = threading.Lock()
        self._last: Tuple[Optional[tuple], Optional[np.ndarray]] = (None, None)

    @property
    def names(self) -> List[str]:
        return list(self.segmenters)

    def _mask(self, path: Path, name: str, image) -> Tuple[np.ndarray, float]:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, name, self.resize, self.max_size)
        with self._lock:
            if self._last[0] == key:
                return self._last[1], 0.0
            start = time.perf_counter()
            mask = predict_image(self.segmenters[name], image, resize=self.resize, max_size=self.max_size)
            self._last = (key, mask)
            return mask, time.perf_counter() - start

    def segment(self, path, name: Optional[str] = None, alpha: Optional[float] = None) -> DemoResult:
        """Predict the image file at ``path`` with model ``name`` (default: the first) and blend the
        overlay with opacity ``alpha`` (default: the demo's). Raises ``ValueError`` naming the file for
        an unreadable image and ``KeyError`` for an unknown model."""
        name = name or self.names[0]
        if name not in self.segmenters:
            raise KeyError(f"unknown model {name!r} (the demo has {', '.join(self.names)})")
        alpha = self.alpha if alpha is None else float(alpha)
        path = Path(path)
        try:
            image = read_image(path)
        except ValueError as exc:
            raise ValueError(f"{path.name}: {exc}") from exc
        segmenter = self.segmenters[name]
        mask, seconds = self._mask(path, name, image)
        rows = class_table(mask, segmenter.id2label, segmenter.num_labels)
        h, w = mask.shape
        th, tw = input_size((h, w), self.resize, self.max_size)
        timing = f"{seconds:.2f} s" if seconds else "cached"
        status = (f"**{name}** ({segmenter.backend} on {segmenter.device}): image {w}x{h}, model input {tw}x{th}, "
                  f"{len(rows)} class(es), {timing}")  # fmt: skip
        blended = overlay(np.asarray(image), mask, alpha, segmenter.num_labels)
        return DemoResult(blended, colorize(mask, segmenter.num_labels), mask, rows, status)


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


def build_interface(demo: SegmentationDemo, examples: Sequence[Path] = (), title: str = "SRHA semantic segmentation"):
    """The Gradio ``Blocks`` page of ``demo``: input image, examples, model dropdown (shown for several
    models), opacity slider; overlay, colour mask, legend, pixel-share table and a status line."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home; read when gradio is imported
    import gradio as gr

    def run(path, name, alpha):
        if not path:
            return None, None, legend_html([]), [], ""
        try:
            result = demo.segment(path, name, alpha)
        except (ValueError, KeyError) as exc:
            raise gr.Error(str(exc)) from exc
        return result.overlay, result.color, legend_html(result.rows), result.rows, result.status

    with gr.Blocks(title=title) as page:
        gr.Markdown(f"### {html.escape(title)}\nUpload a street scene or pick an example.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", label="Input image", sources=["upload", "clipboard"], elem_id="srha-input")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[image], label="Examples", examples_per_page=12)
                model = gr.Dropdown(demo.names, value=demo.names[0], label="Model", visible=len(demo.names) > 1, elem_id="srha-model")
                alpha = gr.Slider(0.0, 1.0, value=demo.alpha, step=0.05, label="Overlay opacity", elem_id="srha-alpha")
            with gr.Column():
                over = gr.Image(type="numpy", format="png", label="Overlay", interactive=False, elem_id="srha-overlay")
                color = gr.Image(type="numpy", format="png", label="Colour mask", interactive=False, elem_id="srha-color")
                legend = gr.HTML(legend_html([]), label="Classes present", elem_id="srha-legend")
                status = gr.Markdown(elem_id="srha-status")
        table = gr.Dataframe(headers=TABLE_HEADERS, label="Pixel share per class", interactive=False, elem_id="srha-table")
        outputs = [over, color, legend, table, status]
        inputs = [image, model, alpha]
        for event in (image.change, model.change, alpha.release):
            event(run, inputs, outputs, concurrency_id="segment", concurrency_limit=1, show_progress="minimal")
    return page


def launch(page, host: str = "127.0.0.1", port: int = 7860, share: bool = False):
    """Serve ``page`` without blocking (no server-side rendering, system fonts, Gradio analytics off unless
    ``GRADIO_ANALYTICS_ENABLED`` says otherwise); returns ``(local_url, share_url or None)``. A busy
    port raises ``OSError`` naming it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])  # no web fonts
    try:
        _, local_url, share_url = page.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True,
                                              quiet=True, ssr_mode=False, css=LEGEND_CSS, theme=theme)  # fmt: skip
    except OSError as exc:
        raise OSError(f"cannot serve on {host}:{port} ({exc}); is the port in use? choose another with --port") from exc
    return local_url, share_url
