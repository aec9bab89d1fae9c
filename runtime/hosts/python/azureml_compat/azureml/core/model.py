"""``azureml.core.model.Model.get_model_path`` over the job's models.

With ``spec.models`` the job's models are known by name: ``PARALLELRUN_MODELS`` (set for worker
processes, with ``AZUREML_MODEL_DIR``) is ``{name: {"version": str or None, "path": str}}``, the
path being ``$AZUREML_MODEL_DIR/<name>`` (``/mnt/models/<name>`` in a pod, a link to the source
folder locally). A model folder that holds a single file resolves to that file, as in Azure ML.

Without ``spec.models`` (older manifests that set ``AZUREML_MODEL_DIR`` in ``spec.env``), every
sub-folder of ``$AZUREML_MODEL_DIR`` is a model, optionally with version sub-folders
``<name>/<version>``; no version means the highest one.
"""

import json
import os

__all__ = ["Model"]


def _visible(folder):
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def _single_file(path):
    """A folder holding exactly one file (hidden entries aside) stands for that file."""
    if os.path.isdir(path):
        entries = _visible(path)
        if len(entries) == 1 and os.path.isfile(os.path.join(path, entries[0])):
            return os.path.join(path, entries[0])
    return path


def _job_models(model_name):
    text = os.environ.get("PARALLELRUN_MODELS")
    if not text:
        return None
    try:
        models = json.loads(text)
    except ValueError as e:
        raise RuntimeError("Model.get_model_path(%r): PARALLELRUN_MODELS is not JSON: %s"
                           % (model_name, e)) from None
    if not isinstance(models, dict):
        raise RuntimeError("Model.get_model_path(%r): PARALLELRUN_MODELS is not a JSON object"
                           % model_name)
    return models


def _describe(models):
    return ", ".join("%s (version %s)" % (n, m["version"]) if m.get("version") else n
                     for n, m in sorted(models.items())) or "none"


def _from_spec(models, model_name, version):
    model = models.get(model_name)
    if model is None:
        raise RuntimeError("Model.get_model_path(%r): the job has no such model; the job's "
                           "models: %s (spec.models)" % (model_name, _describe(models)))
    if version is not None and str(version) != str(model.get("version")):
        have = ("version %s" % model["version"]) if model.get("version") else "no version"
        raise RuntimeError("Model.get_model_path(%r, version=%r): the job's model %r has %s in "
                           "spec.models; the job's models: %s"
                           % (model_name, version, model_name, have, _describe(models)))
    path = model.get("path") or ""
    if not os.path.exists(path):
        raise RuntimeError("Model.get_model_path(%r): the model's folder %s does not exist"
                           % (model_name, path))
    return _single_file(path)


def _from_folder(model_name, version):
    root = os.environ.get("AZUREML_MODEL_DIR")
    if not root:
        raise RuntimeError(
            "Model.get_model_path(%r): the job has no models; list them in spec.models "
            "(name, version, source)" % model_name)
    path = os.path.join(root, model_name)
    if not os.path.exists(path):
        try:
            names = _visible(root)
        except OSError as e:
            raise RuntimeError("Model.get_model_path(%r): cannot list AZUREML_MODEL_DIR %s: %s"
                               % (model_name, root, e)) from None
        raise RuntimeError("Model.get_model_path(%r): no such model in %s; the job's models: %s"
                           % (model_name, root, ", ".join(names) or "none"))
    if version is not None:
        if not os.path.isdir(os.path.join(path, str(version))):
            raise RuntimeError("Model.get_model_path(%r, version=%r): no folder %s"
                               % (model_name, version, os.path.join(path, str(version))))
        path = os.path.join(path, str(version))
    elif os.path.isdir(path):
        # Only version folders (1, 2, ...): the latest, as Azure ML does without a version.
        entries = _visible(path)
        if entries and all(n.isdigit() and os.path.isdir(os.path.join(path, n))
                           for n in entries):
            path = os.path.join(path, max(entries, key=int))
    return _single_file(path)


class Model:
    """What entry scripts use of Azure ML's ``Model`` inside a job: ``get_model_path``. (Model
    objects, registration and download need a workspace and are not provided.)"""

    @staticmethod
    def get_model_path(model_name, version=None, _workspace=None):
        """The path of the job's model ``model_name`` (a file or a folder). Raises an error naming
        the models the job has when there is no such model, or its version differs."""
        models = _job_models(model_name)
        if models is not None:
            return _from_spec(models, model_name, version)
        return _from_folder(model_name, version)

