"""The failures that cross layers: raised low (config, run folder, launch), caught by the pipeline and the CLI,
which turn each into one clear line instead of a traceback. Module-local errors stay beside their code."""


class RecipeError(ValueError):
    """The recipe is wrong; the message names the dotted key. Raised before any heavy work."""


class ManifestError(RuntimeError):
    """An upstream artifact is missing, unfinished or not what its manifest sealed."""


class RunFolderBusy(RuntimeError):
    """Another chain holds the run folder; the message names the holder."""


class LaunchError(RuntimeError):
    """A training stage cannot be started this way (e.g. multi-node outside Slurm)."""


class SubmitError(RuntimeError):
    """sbatch is missing or refused a job."""


class StageFailed(RuntimeError):
    """A stage ended in error; the message says which and where its traceback is."""


class TrainDataError(ValueError):
    """Training inputs that cannot be used (mismatched tokenizer, empty split, no valid record)."""


class TrainingInterrupted(RuntimeError):
    """The stage stopped on purpose before max_steps: `reason` is preempted or rollback; a rerun resumes it."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
