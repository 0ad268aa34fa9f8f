"""The ONNX bridge: export (needs Keras, `bridge.export*`) and runtime (torch + onnxruntime only, `bridge.runtime*`)."""
