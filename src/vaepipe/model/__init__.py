"""The model wing: the VAE of the notes and its architectures, the loss, the optimiser, the
device and the ONNX export. No imports here (see vaepipe/data/__init__.py)."""
