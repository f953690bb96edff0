"""Making a product, step 4: the serving graph as ONNX files and TensorRT plans."""
