"""The rows of the paper's ablation (used by ``experiments/dg_ablation.py`` and its tests).

Each row is a set of :class:`~srha_hf.SRHAConfig` keys (``model_kwargs`` of a recipe) over the full SRHA
objective; every other setting of the recipe stays the same:

* ``plain``   DeepLabV3+: CE + aux only, no SRM (batch ``B``), no teacher;
* ``srm``     + SRM (the batch doubles to ``[original; rearranged]``), CE on both halves;
* ``srm_pc``  + SRM + prediction consistency (``pc_weight`` 10);
* ``srm_hac`` + SRM + HAC (GA/RA/LA with weights 0.4/0.6/0.8/1.0 against the frozen teacher), no PC;
* ``full``    full SRHA (SRM + HAC + PC).
"""

from __future__ import annotations

from typing import Dict, Tuple

_OFF = [0.0, 0.0, 0.0, 0.0]
_NO_HAC = {"ga_weights": _OFF, "ra_weights": _OFF, "la_weights": _OFF}

ABLATION_ROWS: Dict[str, Tuple[str, dict]] = {
    "plain": ("DeepLabV3+ (CE + aux)", {"srm": False, "pc_weight": 0.0, **_NO_HAC}),
    "srm": ("+ SRM", {"srm": True, "pc_weight": 0.0, **_NO_HAC}),
    "srm_pc": ("+ SRM + PC", {"srm": True, "pc_weight": 10.0, **_NO_HAC}),
    "srm_hac": ("+ SRM + HAC (GA/RA/LA)", {"srm": True, "pc_weight": 0.0}),
    "full": ("full SRHA (SRM + HAC + PC)", {"srm": True, "pc_weight": 10.0}),
}

# The loss terms each row reports (``compute_srha_loss``'s ``terms``) and how many rows the student sees
# per image (2 with SRM).
ROW_TERMS: Dict[str, Tuple[frozenset, int]] = {
    "plain": (frozenset({"ce", "aux"}), 1),
    "srm": (frozenset({"ce", "aux"}), 2),
    "srm_pc": (frozenset({"ce", "aux", "pc"}), 2),
    "srm_hac": (frozenset({"ce", "aux", "ga", "ra", "la"}), 2),
    "full": (frozenset({"ce", "aux", "ga", "ra", "la", "pc"}), 2),
}
