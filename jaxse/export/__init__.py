"""Export of the streaming step (TF SavedModel / TFLite).""" 
from jaxse.export.jax2tf_export import export  # noqa: F401
