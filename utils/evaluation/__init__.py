"""Evaluation: every measure as small vectorised numpy functions under the paper's names, and what uses them.

* ``classification`` - ``acc``, ``top5``, ``acc_level``, ``ahc``, ``ahd5``, ``hp5``, ``ece`` / ``mce``,
  precision / recall / F1;
* ``representation`` - hierarchical inference of class representatives: ``corr_mean``, ``corr_elem``,
  ``corr_perm_p``, ``level_retrieval`` (``p1``, ``rp``, ``mapr``); the trees and Robinson-Foulds distances
  are in ``utils/trees.py``;
* ``retrieval`` - ``hs@k`` and ``ahs250`` without any N x N sort;
* ``measures`` - all of them for one run (``evaluate_outputs``);
* ``summary`` - mean ± std over seeds (``summary.csv``, ``summary.md``);
* ``plots`` - the PNG figures;
* ``weights`` (reading) and ``inspect`` (measuring) - ``evaluate.py --weights``.
"""
