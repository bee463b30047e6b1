"""The model card: Hugging Face front matter plus the sections the wizard promises."""

import yaml

from services.common.task import Task
from services.registry_svc.domain import card as cards
from services.registry_svc.domain.prediction import cut_at_stop


def _input(**overrides) -> cards.CardInput:
    values = dict(  # noqa: C408 - reads like the dataclass
        version_name="projects/p/models/genres/versions/2", model_display_name="Genres", description="For triage.",
        task=Task.SEQUENCE_CLASSIFICATION, label_names=("government", "fiction"), is_adapter_only=True,
        base=cards.BaseFacts(name="baseModels/minilm", display_name="MiniLM", source="sentence-transformers/x",
                             licence_name="Apache-2.0", licence_uri="https://apache.org", context_length=512),
        data=cards.DataFacts(name="projects/p/datasets/d/versions/1", split_rows={"train": 80, "test": 20},
                             row_count=100, label_distribution=[("government", 60), ("fiction", 40)],
                             warnings=["3 rows are empty"], pii_rows=2),
        tuning_job="projects/p/tuningJobs/j", method=1, hyperparameters={"epochs": 3, "lora": {"rank": 8}},
        trained_step=40, trainable_parameter_count=1234, training_metrics={"eval_accuracy": 0.8},
        evaluations=[cards.EvaluationFacts(name="projects/p/evaluations/e", split="test", summary="Good.",
                                           metrics={"accuracy": 0.9, "log_loss": 0.3},
                                           baseline={"accuracy": 0.5, "log_loss": 0.7},
                                           higher_is_better={"accuracy": True, "log_loss": False})])
    values.update(overrides)
    return cards.CardInput(**values)


def test_front_matter_is_hub_style_yaml():
    text = cards.render(_input())
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "apache-2.0" and meta["base_model"] == "sentence-transformers/x"
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-classification"
    assert meta["model-index"][0]["results"][0]["metrics"][0] == {"type": "accuracy", "name": "accuracy",
                                                                  "value": 0.9}


def test_body_has_use_data_parameters_metrics_licence_and_limits():
    text = cards.render(_input())
    assert "For triage." in text and "`government`, `fiction`" in text
    assert "| government | 60 | 60.0% |" in text and "warning: 3 rows are empty" in text
    assert "| lora.rank | 8 |" in text
    assert "| accuracy | 0.9 | 0.5 | +0.4 (better) |" in text
    assert "| log_loss | 0.3 | 0.7 | -0.4 (better) |" in text
    assert "Apache-2.0" in text and "personal data in 2 rows" in text and "512 tokens" in text
    assert "PeftModel.from_pretrained" in text


def test_without_evaluations_the_headline_is_the_validation():
    assert cards.headline_metrics([], {"eval_accuracy": 0.8, "train_loss": 0.1}) == {"eval_accuracy": 0.8}
    text = cards.render(_input(evaluations=[], data=None, is_adapter_only=False, task=Task.CAUSAL_LM))
    assert "No evaluation was linked" in text and "could not be read" in text
    assert "AutoModelForCausalLM.from_pretrained(\"./model\")" in text


def test_stop_strings_cut_at_the_first():
    assert cut_at_stop("one. two! three", ("!", ".")) == ("one", True)
    assert cut_at_stop("no stop", ("!",)) == ("no stop", False)
