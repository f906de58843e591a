"""Each ablation row (experiments/rows.py) trains exactly its own objective."""

import pytest
import torch

from experiments.rows import ABLATION_ROWS, ROW_TERMS
from srha_hf import SRHAForSemanticSegmentation, build_teacher, compute_srha_loss, uses_teacher
from tests.test_pretrain_stage import street_batch, tiny


@pytest.mark.parametrize("row", list(ABLATION_ROWS))
def test_each_ablation_row_trains_exactly_its_terms(row):
    torch.manual_seed(0)
    config = tiny(**ABLATION_ROWS[row][1])
    student = SRHAForSemanticSegmentation(config).train()
    expected_terms, rows_per_image = ROW_TERMS[row]
    assert uses_teacher(config) == ("ga" in expected_terms)
    teacher = build_teacher(config, student) if uses_teacher(config) else None
    calls = {"student": [], "teacher": 0}
    student.register_forward_hook(lambda m, args, out: calls["student"].append(out.logits.shape[0]))
    if teacher is not None:
        teacher.register_forward_hook(lambda m, args, out: calls.__setitem__("teacher", calls["teacher"] + 1))
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.01)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        x, labels = street_batch(gen)
        loss, terms = compute_srha_loss(student, teacher, x, labels, generator=gen)
        assert set(terms) == expected_terms
        assert torch.allclose(loss.detach(), sum(terms.values()))
        assert all(torch.isfinite(v) and v >= 0 for v in terms.values())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert calls["student"] == [2 * rows_per_image] * 2
    assert calls["teacher"] == (2 if teacher is not None else 0)
