"""Every evaluation measure as small, vectorised numpy functions under the paper's names.

* :mod:`utils.metrics.representation` - hierarchical inference of class
  representatives: ``corr_mean``, ``corr_elem``, ``corr_perm_p``,
  ``level_retrieval`` (``p1``, ``rp``, ``mapr``); the trees and
  Robinson-Foulds distances are in :mod:`utils.trees`.
* :mod:`utils.metrics.classification` - ``acc``, ``top5``, ``acc_level``,
  ``ahc``, ``ahd5``, ``hp5``, ``ece`` / ``mce``, precision / recall / F1.
* :mod:`utils.metrics.retrieval` - ``hs@k`` and ``ahs250`` without any N x N sort.
* :mod:`utils.metrics.evaluation` - all of them for one run, and the summary over seeds.
"""
