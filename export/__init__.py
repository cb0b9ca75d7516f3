"""Export of trained models to TorchScript, torch.export/AOTInductor, ONNX and TensorRT
(installed as ``asl_edge.export``). The runtime in ``asl_edge`` never imports this package's
code; the command line registers ``asl-edge export`` from ``command.py``, which imports the rest
only when the command runs.
"""
