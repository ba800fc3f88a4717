"""Import weights of other toolkits: asteroid mapping (``asteroid``), torch pickle reader (``torch_pickle``)."""
from jaxse.convert.asteroid import ConversionError, convert_asteroid_dccrnet  # noqa: F401
