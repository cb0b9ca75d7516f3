"""Training of the ASL model from pre-extracted clip features (installed as ``asl_edge.train``).

Datasets, label assignment, the ASL losses, the trainer and the evaluator live here; the
runtime in ``asl_edge`` never imports this package's code, so an edge install needs none of its
dependencies: the command line registers its commands from ``commands.py``, which imports the rest
only when a command runs.
"""
