"""A foundation model brought into the run from a local folder, verified before anything trusts it.

    base_problems(path, name=..., license=..., ...)  the cheap, torch-free checks (a recipe check runs them)
    verify_base(path, name=..., license=..., ...)    every check, then the streamed sha256 of every file -> BaseReport

Importing this package loads neither torch nor transformers; verify_base does.
"""

from kgov_train.foundation.folder import BaseImportError, base_problems, local_folder
from kgov_train.foundation.hashing import folder_files
from kgov_train.foundation.verify import BaseReport, verify_base

__all__ = ["BaseImportError", "BaseReport", "base_problems", "folder_files", "local_folder", "verify_base"]
