"""Export of trained models to TorchScript, torch.export/AOTInductor, ONNX and TensorRT
(installed as ``asl_edge.export``). The runtime in ``asl_edge`` never imports this package.
"""
