"""parallelrun's stand-in for the parts of the Azure ML SDK (``azureml.core``) that entry scripts
use while they run: ``Model.get_model_path`` and ``Run.get_context()``.

The Python host puts this folder at the END of ``sys.path``, so an installed ``azureml-core``
always wins; ``azureml`` here is a namespace package for the same reason. Nothing talks to Azure.
"""

from azureml.core.model import Model
from azureml.core.run import Run

__all__ = ["Model", "Run"]
