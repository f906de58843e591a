"""Research on the synthetic benchmark: the domain-generalisation ablation, its probes and the trial benchmarks
(see experiments/README.md). Run from the repository root, e.g. ``python -m experiments.dg_ablation``."""
