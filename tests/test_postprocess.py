from __future__ import annotations

import numpy as np
import pytest

from ggic.classifier.labels import parse_labels
from ggic.classifier.postprocess import scores_from_output, softmax, top_k
from ggic.messages import ClassificationError

LABELS = parse_labels("\n".join(f"c{i}" for i in range(10)))


def test_softmax_is_stable_and_sums_to_one():
    logits = np.array([[1000.0, 999.0, -1000.0]], dtype=np.float32)
    p = softmax(logits)
    assert p.sum() == pytest.approx(1.0)
    assert p[0, 0] == pytest.approx(1 / (1 + np.exp(-1)))


def test_logits_become_probabilities_and_topk_is_sorted():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 10)).astype(np.float32) * 3
    scores = scores_from_output(logits, "logits")
    preds = top_k(scores, 3, 0.0, LABELS)
    expected = np.argsort(-logits[0])[:3]
    assert [p.class_id for p in preds] == expected.tolist()
    assert [p.label for p in preds] == [f"c{i}" for i in expected]
    assert all(0.0 <= p.score <= 1.0 for p in preds)
    e = np.exp(logits[0] - logits[0].max())
    assert preds[0].score == pytest.approx(float(e[expected[0]] / e.sum()), rel=1e-6)


def test_threshold_applies_to_probabilities_not_logits():
    logits = np.array([[5.0, 4.0, 0.0, 0.0]])  # logits all >= 0.3 except two
    preds = top_k(scores_from_output(logits, "logits"), 4, 0.3, LABELS)
    assert [p.class_id for p in preds] == [0]  # 0.72; class 1 is 0.26 < 0.3


def test_probability_outputs_pass_through():
    probs = np.array([[0.1, 0.7, 0.2]])
    preds = top_k(scores_from_output(probs, "probabilities"), 2, 0.0, LABELS)
    assert [(p.class_id, round(p.score, 6)) for p in preds] == [(1, 0.7), (2, 0.2)]


def test_k_larger_than_classes_and_ties_are_deterministic():
    scores = np.array([0.25, 0.25, 0.5])
    assert [p.class_id for p in top_k(scores, 10, 0.0, LABELS)] == [2, 0, 1]


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), np.array([[np.nan, 1.0]]), np.zeros((1, 0))])
def test_bad_outputs_are_model_errors(bad):
    with pytest.raises(ClassificationError) as info:
        scores_from_output(bad, "logits")
    assert info.value.code.value == "MODEL_ERROR"


def test_top_k_below_the_class_count_orders_ties_by_class_id_with_plain_python_values():
    scores = np.array([0.1, 0.3, 0.3, 0.05, 0.3, 0.2])
    preds = top_k(scores, 4, 0.15, LABELS)
    assert [(p.class_id, p.label, p.score) for p in preds] == [
        (1, "c1", 0.3), (2, "c2", 0.3), (4, "c4", 0.3), (5, "c5", 0.2)]
    assert all(type(p.class_id) is int and type(p.score) is float for p in preds)
