"""The task a dataset trains, a job produces and an evaluation measures: shared by
every service. Values match `mtw.common.v1.Task`."""

from __future__ import annotations

import enum


class Task(enum.Enum):
    UNSPECIFIED = 0
    SEQUENCE_CLASSIFICATION = 1
    CAUSAL_LM = 2
    CHAT_SFT = 3
