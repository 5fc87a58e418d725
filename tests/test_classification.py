"""The paper's macro F1 rule (``f1_paper``) against hand counts and scikit-learn."""
import numpy as np
import pytest

from utils.evaluation import classification as cm

# Six classes.  Class 2 has no test image but is predicted once; class 3 has two
# test images and is never predicted; class 4 is neither present nor predicted;
# class 5 is present and predicted but never right.
LABELS = np.array([0, 0, 0, 0, 1, 3, 3, 5])
PRED = np.array([0, 0, 2, 5, 1, 0, 1, 1])


def test_confusion_of_the_example():
    conf = cm.confusion_matrix(LABELS, PRED, 6)
    np.testing.assert_array_equal(conf.sum(axis=1), [4, 1, 0, 2, 0, 1])  # support
    np.testing.assert_array_equal(conf.sum(axis=0), [3, 3, 1, 0, 0, 1])  # predicted
    np.testing.assert_array_equal(np.diag(conf), [2, 1, 0, 0, 0, 0])


def test_f1_paper_by_hand_next_to_f1():
    conf = cm.confusion_matrix(LABELS, PRED, 6)
    nan = np.nan
    _, _, f1 = cm.precision_recall_f1(conf)
    # 2 TP / (predicted + support): 4/7, 2/4, 0/1, 0/2, undefined, 0/2
    np.testing.assert_allclose(f1, [4 / 7, 1 / 2, 0, 0, nan, 0], rtol=0, atol=1e-15)
    paper = cm.f1_paper(conf)
    # the test-absent class 2 and the never-predicted class 3 become undefined too; class 5 stays 0
    np.testing.assert_allclose(paper, [4 / 7, 1 / 2, nan, nan, nan, 0], rtol=0, atol=1e-15)
    assert cm.macro(f1) == pytest.approx((4 / 7 + 1 / 2) / 5)  # 3/14
    assert cm.macro(paper) == pytest.approx((4 / 7 + 1 / 2) / 3)  # 5/14


def test_f1_paper_is_sklearn_over_the_classes_present_and_predicted():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    paper = cm.macro(cm.f1_paper(cm.confusion_matrix(LABELS, PRED, 6)))
    assert paper == pytest.approx(sklearn_metrics.f1_score(LABELS, PRED, labels=[0, 1, 5], average="macro"))


def test_f1_paper_of_nothing_defined_is_none():
    conf = np.array([[0, 3], [0, 0]])  # class 0 never predicted, class 1 never present
    assert cm.macro(cm.f1_paper(conf)) is None
    assert cm.macro(cm.precision_recall_f1(conf)[2]) == 0.0
