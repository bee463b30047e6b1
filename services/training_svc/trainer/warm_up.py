"""Started in each Ray Train worker process as it starts (``worker_process_setup_hook``):
the libraries the training loop needs are imported in a background thread while Ray
Train sets the worker up (actor creation, train context, process group), instead of
after it, when the loop first touches them."""

from __future__ import annotations

import threading


def import_training_libraries() -> None:
    threading.Thread(target=_import, name="mtw-warm-up", daemon=True).start()


def _import() -> None:
    import peft  # noqa: F401
    from transformers import (  # noqa: F401
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )
