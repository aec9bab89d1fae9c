"""``azureml.core.model.Model.get_model_path`` over the job's models folder.

The models of a job live in ``$AZUREML_MODEL_DIR/<name>`` (``spec.env`` sets the variable, and
a side input or volume provides the folder), optionally with version sub-folders
``<name>/<version>``. As in Azure ML, no version means the latest one, and a model folder that
holds a single file resolves to that file.
"""

import os

__all__ = ["Model"]


class Model:
    @staticmethod
    def get_model_path(model_name, version=None, _workspace=None):
        """The path of the model ``model_name`` (a file or folder). ``version`` selects the
        sub-folder ``<name>/<version>`` when the model folder has one; without it a folder of
        version folders only resolves to the highest version. Raises an error naming the
        models the job has when there is no such model."""
        root = os.environ.get("AZUREML_MODEL_DIR")
        if not root:
            raise RuntimeError(
                "Model.get_model_path(%r): AZUREML_MODEL_DIR is not set; set it in spec.env to "
                "the folder that holds the job's models (one sub-folder per model)" % model_name)
        path = os.path.join(root, model_name)
        if not os.path.exists(path):
            try:
                names = sorted(n for n in os.listdir(root) if not n.startswith("."))
            except OSError as e:
                raise RuntimeError("Model.get_model_path(%r): cannot list AZUREML_MODEL_DIR %s: %s"
                                   % (model_name, root, e)) from None
            raise RuntimeError("Model.get_model_path(%r): no such model in %s; the job's models: %s"
                               % (model_name, root, ", ".join(names) or "none"))
        if version is not None and os.path.isdir(os.path.join(path, str(version))):
            path = os.path.join(path, str(version))
        elif version is None and os.path.isdir(path):
            # Only version folders (1, 2, ...): the latest, as Azure ML does without a version.
            entries = [n for n in os.listdir(path) if not n.startswith(".")]
            if entries and all(n.isdigit() and os.path.isdir(os.path.join(path, n))
                               for n in entries):
                path = os.path.join(path, max(entries, key=int))
        if os.path.isdir(path):
            entries = [n for n in os.listdir(path) if not n.startswith(".")]
            if len(entries) == 1 and os.path.isfile(os.path.join(path, entries[0])):
                return os.path.join(path, entries[0])
        return path
