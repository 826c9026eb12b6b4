"""Export: a trained run's swap path as an ONNX model (onnx.py), checked on real faces
(check.py) against PyTorch. Runs in convert (`-m model.onnx`) and live through onnxruntime."""
