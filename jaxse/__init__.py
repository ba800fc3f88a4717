"""jaxse: speech enhancement in JAX/Flax (CRN, DCCRN) with native complex dtypes."""

__version__ = "0.1.0"
