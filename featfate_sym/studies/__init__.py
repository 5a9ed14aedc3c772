"""Studies: questions asked of the theory and the engines together.

* :mod:`~featfate_sym.studies.distances_vs_transfer` -- do data-centric distances between
  the tasks predict the sign of transfer? (counterexamples at one KL divergence);
* :mod:`~featfate_sym.studies.ridge_baseline` and
  :mod:`~featfate_sym.studies.ridge_baseline_phase` -- transfer against optimally tuned
  ridge scratch (the anomalous band of min-norm scratch disappears);
* :mod:`~featfate_sym.studies.relu_phase` and :mod:`~featfate_sym.studies.relu_overlap` --
  the phase diagram of two-layer ReLU networks (mean-field simulations and the overlap
  of features);
* :mod:`~featfate_sym.studies.phase_boundary` -- the break-even curves of every
  transferability, solved on a grid;
* :mod:`~featfate_sym.studies.finite_source` -- fine-tuning from a finite source:
  simulation against the exact and ``c = 1`` forms with a control-variate estimator;
* :mod:`~featfate_sym.studies.benchmarks` -- the hand-written references and timers of the
  benchmark scripts in ``numerics/``.

Each study reads the registry (:mod:`featfate_sym.theory`) and the engines
(:mod:`featfate_sym.simulation`); none prints or plots.
"""
