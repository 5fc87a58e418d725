"""Hierarchy-informed classification measures (docs/evaluate.md), vectorised over images.

Inputs are class scores ``[N, C]`` (higher is better), true labels ``[N]`` and
the tree distances ``D_T`` / level groups of :class:`utils.hierarchy.Hierarchy`.
The prediction is the arg-max score; top-k lists are ordered by score with
ties broken by the lower class index (:func:`topk`).
"""
import numpy as np
from scipy import stats

from utils.evaluation.representation import rows_per_block, spearman_columns


def _topk_sets_exact(values, k):
    """Column indices of the k largest entries per row, in index order, ties at the k-th value by lower index."""
    n, m = values.shape
    kth = np.partition(values, m - k, axis=1)[:, m - k]  # the k-th largest value of each row
    above = values > kth[:, None]
    ties = values == kth[:, None]
    need = k - above.sum(axis=1)
    chosen = above | (ties & (np.cumsum(ties, axis=1) <= need[:, None]))
    return np.nonzero(chosen)[1].reshape(n, k)  # row-major: index order within a row


def topk(values, k):
    """Column indices of the ``k`` largest entries of each row, largest first, ties by lower index.

    Exact and O(rows x columns): ``argpartition`` finds k largest entries and
    the k-th largest value; where more than k entries reach that value (a tie
    at the boundary), the row is redone so the lower indices win.  Only the k
    chosen entries are then sorted (by value, then index).
    """
    values = np.asarray(values)
    n, m = values.shape
    rows = rows_per_block(m, copies=1)
    if n > rows:  # 100,000 images x 10,000 classes: a block of rows at a time (the rows are independent)
        return np.concatenate([topk(values[r0:r0 + rows], k) for r0 in range(0, n, rows)])
    if k >= m:
        return np.argsort(-values, axis=1, kind="stable")
    cols = np.argpartition(values, m - k, axis=1)[:, m - k :]
    kth = np.take_along_axis(values, cols[:, :1], axis=1)  # position m - k holds the k-th largest
    tied = np.flatnonzero(np.count_nonzero(values >= kth, axis=1) > k)
    if tied.size:
        cols[tied] = _topk_sets_exact(values[tied], k)
    cols.sort(axis=1)  # index order, so the stable sort below breaks ties by index
    order = np.argsort(-np.take_along_axis(values, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


def predict(scores):
    """The arg-max class of each row (the lowest index among equal maxima)."""
    return np.argmax(np.asarray(scores), axis=1)


def acc(pred, labels):
    """``acc``: fraction of images whose predicted class is the label."""
    return float(np.mean(np.asarray(pred) == np.asarray(labels)))


def top_k_accuracy(top, labels):
    """``top5`` (with ``top`` = :func:`topk` of the scores, k = 5): the label is among the top k."""
    return float(np.mean(np.any(np.asarray(top) == np.asarray(labels)[:, None], axis=1)))


def acc_level(pred, labels, groups):
    """``acc_level_l``: prediction and label mapped to their level-l groups, then accuracy."""
    groups = np.asarray(groups)
    return float(np.mean(groups[pred] == groups[labels]))


def ahc(pred, labels, D_T):
    """``ahc`` (average hierarchical cost): mean ``d_T(prediction, label)``; correct = 0."""
    return float(np.mean(np.asarray(D_T)[pred, labels]))


def ahd(top, labels, D_T):
    """``ahd5`` (with k = 5): mean over images of the mean ``d_T`` of the top-k predictions to the label."""
    return float(np.mean(np.asarray(D_T)[np.asarray(labels)[:, None], top]))


def hp_radius(D_T, k):
    """Per class y: the value at index ``k + 1`` of the ascending sorted row ``d_T(y, .)`` (faithful).

    Index 0 is y itself.  With fewer than k + 2 classes the last index is used.
    """
    D_T = np.asarray(D_T)
    return np.sort(D_T, axis=1)[:, min(k + 1, D_T.shape[1] - 1)]


def hp(top, labels, D_T):
    """``hp5`` (hierarchical precision at k = top.shape[1]).

    Correct set of label y: the classes c with ``d_T(y, c) <= hp_radius(y)``;
    ``hp`` = mean over images of |top-k in the correct set| / k.
    """
    D_T = np.asarray(D_T)
    labels = np.asarray(labels)
    radius = hp_radius(D_T, top.shape[1])
    inside = D_T[labels[:, None], top] <= radius[labels][:, None]
    return float(inside.mean())


def max_softmax(scores):
    """Maximum softmax probability of each row, in float64 (a 1.0 stays exactly 1.0); a block of rows at a time."""
    scores = np.asarray(scores)
    rows = rows_per_block(scores.shape[1], copies=1)
    out = np.empty(scores.shape[0])
    for r0 in range(0, scores.shape[0], rows):
        s = np.asarray(scores[r0:r0 + rows], dtype=np.float64)
        s = s - s.max(axis=1, keepdims=True)
        out[r0:r0 + rows] = 1.0 / np.exp(s).sum(axis=1)
    return out


def reliability_bins(confidence, correct, n_bins=15):
    """The reliability histogram: ``(count, mean confidence, accuracy)`` of each of ``n_bins`` bins.

    Bin b holds confidences in ``[b/n, (b+1)/n)``, and confidence 1.0 falls in
    the last bin.  Mean confidence and accuracy are NaN in an empty bin.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        conf_mean = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return count, conf_mean, accuracy


def calibration(confidence, correct, n_bins=15):
    """``ece`` and ``mce`` over the ``n_bins`` equal-width bins of :func:`reliability_bins`.

    ECE = sum_b (n_b / N) |acc_b - conf_b|; MCE = the largest |acc_b - conf_b|
    over non-empty bins.  Returns ``(ece, mce)``.
    """
    count, conf_mean, accuracy = reliability_bins(confidence, correct, n_bins)
    used = count > 0
    gap = np.abs(accuracy[used] - conf_mean[used])
    ece = float(np.sum(count[used] * gap) / count.sum())
    mce = float(gap.max())
    return ece, mce


def calib_spearman(confidence, correct, n_bins=15):
    """``calib_spearman``: Spearman correlation between the mean confidence and the accuracy of the
    non-empty reliability bins, and its p-value.

    Returns ``(r, p)``: ``r`` is ``None`` with fewer than 2 non-empty bins or a
    constant column; ``p`` (t distribution, bins - 2 dof) is ``None`` with
    fewer than 3 non-empty bins.
    """
    count, conf_mean, accuracy = reliability_bins(confidence, correct, n_bins)
    used = count > 0
    if used.sum() < 2:
        return None, None
    r, p = spearman_columns(conf_mean[used, None], accuracy[used, None])
    r, p = float(r[0]), float(p[0])
    if not np.isfinite(r):
        return None, None
    return r, (p if used.sum() >= 3 and np.isfinite(p) else None)


def pointbiserial(correct, confidence):
    """``pointbiserial``: correlation between correctness (0/1) and confidence, and its p-value.

    r = (M_1 - M_0) / s * sqrt(q_1 q_0), with M_1 / M_0 the mean confidence of
    the correct / wrong predictions, q_1 / q_0 their fractions and s the
    population standard deviation of the confidence (this equals Pearson's r
    of the 0/1 correctness against the confidence).  p: two-sided t test,
    t = r sqrt((N - 2) / (1 - r^2)), N - 2 dof.  ``(None, None)`` when every
    prediction is right, every one is wrong, or the confidence is constant.
    """
    correct = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidence, dtype=np.float64)
    n = correct.size
    n1 = int(correct.sum())
    s = confidence.std()
    if n1 in (0, n) or not s > 0:
        return None, None
    q1 = n1 / n
    r = (confidence[correct].mean() - confidence[~correct].mean()) / s * np.sqrt(q1 * (1.0 - q1))
    r = float(np.clip(r, -1.0, 1.0))
    if n < 3:
        return r, None
    with np.errstate(divide="ignore"):
        t = r * np.sqrt((n - 2) / (1.0 - r * r)) if abs(r) < 1 else np.inf
    return r, float(2.0 * stats.t.sf(abs(t), n - 2))


def confusion_matrix(labels, pred, n):
    """``[n, n]`` int64 counts: row = true group/class, column = predicted."""
    labels = np.asarray(labels, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    return np.bincount(labels * n + pred, minlength=n * n).reshape(n, n)


def precision_recall_f1(confusion):
    """Per row/column of a confusion matrix: precision, recall, F1 (NaN where undefined).

    precision = TP / predicted (undefined when never predicted);
    recall = TP / support (undefined without support);
    F1 = 2 TP / (2 TP + FP + FN) (undefined when neither predicted nor present).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        denom = predicted + support  # = 2 TP + FP + FN
        f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
    return precision, recall, f1


def macro(values):
    """Mean over the defined (non-NaN) entries; ``None`` when there are none."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    return float(values[ok].mean()) if ok.any() else None


def f1_paper(confusion):
    """Per row/column F1 under the paper's rule (``f1_paper``): :func:`precision_recall_f1`'s F1,
    but NaN for a class without test images (no support) and for a class never predicted.

    The macro mean (:func:`macro`) then leaves both kinds out, as the paper's
    evaluation does; :func:`precision_recall_f1` counts both as F1 = 0.
    """
    confusion = np.asarray(confusion)
    _, _, f1 = precision_recall_f1(confusion)
    defined = (confusion.sum(axis=0) > 0) & (confusion.sum(axis=1) > 0)
    return np.where(defined, f1, np.nan)
