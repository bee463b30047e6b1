"""Loss and perplexity of held-out text from each example's summed token loss and its
number of scored tokens: loss = total loss / total tokens, perplexity = exp(loss)."""

import math

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Mean per-token cross-entropy and perplexity over a corpus."
_INPUTS = """
Args:
    losses: summed cross-entropy (natural log) of each example's scored tokens.
    token_counts: tokens scored in each example.
Returns:
    loss (per token) and perplexity.
"""
_MAX_LOSS = 50.0  # exp(50) is already meaningless; keeps the value finite


class MtwPerplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"losses": datasets.Value("float64"), "token_counts": datasets.Value("int64")}
            ),
        )

    def _compute(self, losses, token_counts):
        tokens = float(np.sum(np.asarray(token_counts, dtype=np.float64)))
        loss = float(np.sum(np.asarray(losses, dtype=np.float64)) / tokens) if tokens else 0.0
        return {"loss": loss, "perplexity": math.exp(min(loss, _MAX_LOSS))}
