"""Policy evaluation and export: `twin eval` plays a trained policy in parallel simulated worlds under the
capture's own appearance and every held-out style family (success table with Wilson intervals, failure videos,
Ray shards); `twin export-policy --onnx` writes its inference graph, processors included, for onnxruntime."""
