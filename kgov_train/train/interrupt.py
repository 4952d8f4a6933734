"""TrainingInterrupted: kept apart from the training modules so the pipeline can catch it without importing torch."""


class TrainingInterrupted(RuntimeError):
    """The stage stopped on purpose before max_steps: `reason` is preempted or rollback; a rerun resumes it."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
