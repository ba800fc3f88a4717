"""Export of the streaming step (TF SavedModel / TFLite / ONNX).""" 
from jaxse.export.jax2tf_export import export  # noqa: F401
