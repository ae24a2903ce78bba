"""Export: a bundle folder, ONNX and StableHLO, and the standalone ONNX script."""
