"""``asl-edge bench``: every stage measured through the runtime's interfaces, side by side, with
the plain eager fp32 model (pure-PyTorch ops, CPU post-processing) as the baseline of the same
run. :mod:`.measure` times and describes the machine, :mod:`.stages` runs the stages,
:mod:`.report` writes JSON, Markdown and plots, :mod:`.command` is the command."""
