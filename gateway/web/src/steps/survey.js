// The short survey after a model is saved: overall satisfaction, how easy each wizard
// step was, what to change. Never required: it can be skipped, and it is asked once per
// model version (the insights service refuses a second answer).
import { ApiError, call } from "../api.js";
import { clear, errorBox, h, nextId } from "../ui.js";

export const STEPS = [
  ["WIZARD_STEP_DATASET", "Uploading your data"],
  ["WIZARD_STEP_TRAINING", "Choosing parameters and training"],
  ["WIZARD_STEP_EVALUATION", "Reading the evaluation"],
  ["WIZARD_STEP_SAVE", "Saving and using the model"],
];

// Five radio buttons in a fieldset; `low` and `high` name the ends of the scale.
function scale(name, legend, low, high) {
  return h("fieldset", { class: "scale" },
    h("legend", {}, legend),
    h("span", { class: "muted", "aria-hidden": "true" }, low),
    [1, 2, 3, 4, 5].map((n) => {
      const id = nextId(name);
      return h("span", { class: "choice" },
        h("input", { type: "radio", id, name, value: String(n), "aria-label": `${n} of 5 (${legend})` }),
        h("label", { for: id, "aria-hidden": "true" }, String(n)));
    }),
    h("span", { class: "muted", "aria-hidden": "true" }, high));
}

function chosen(form, name) {
  const input = form.querySelector(`input[name="${name}"]:checked`);
  return input ? Number(input.value) : 0;
}

export async function surveyCard(versionName) {
  const headingId = nextId("survey-h");
  const section = h("section", { class: "card survey", "aria-labelledby": headingId });
  const thanks = (text) => clear(section, h("h2", { id: headingId }, "Thank you"), h("p", { role: "status" }, text));
  try {
    const answer = await call("InsightsService.GetSurveyResponse", { name: `${versionName}/surveyResponse` });
    return thanks(answer.skipped ? "You skipped the survey for this model." : "You told us how it went for this model.");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === "NOT_FOUND")) return null; // no survey here: never in the way
  }

  const commentId = nextId("comment");
  const error = h("div");
  const form = h("form", { novalidate: true },
    scale("overall", "Overall, how satisfied are you with your model?", "not at all", "very"),
    STEPS.map(([step, label]) => scale(step, `How easy was it: ${label.toLowerCase()}?`, "very hard", "very easy")),
    h("label", { for: commentId }, "What would you change? (optional)"),
    h("textarea", { id: commentId, name: "comment", rows: 2, maxlength: 2000 }),
    error,
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Send"),
      h("button", { type: "button", class: "secondary", onclick: () => send({ skipped: true }) }, "Skip")));

  async function send(answer) {
    clear(error);
    for (const button of form.querySelectorAll("button")) button.disabled = true;
    try {
      await call("InsightsService.CreateSurveyResponse", { parent: versionName, survey_response: answer });
      thanks(answer.skipped ? "Skipped. You can keep using the wizard as before." : "Your answers help us make the wizard better.");
    } catch (err) {
      if (err instanceof ApiError && err.status === "ALREADY_EXISTS") return thanks("You answered already.");
      clear(error, errorBox(err, { title: "Not sent" }));
      for (const button of form.querySelectorAll("button")) button.disabled = false;
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const overall = chosen(form, "overall");
    if (!overall) {
      clear(error, errorBox({ message: "Choose how satisfied you are (1 to 5), or skip the survey." }, { title: "One answer is needed" }));
      return;
    }
    const stepEase = STEPS.map(([step]) => ({ step, ease: chosen(form, step) })).filter((s) => s.ease);
    send({ overall, step_ease: stepEase, comment: form.comment.value.trim() });
  });

  return clear(section, h("h2", { id: headingId }, "How did it go?"),
    h("p", { class: "muted" }, "Four quick questions, all optional but the first. Your answers stay with this project."),
    form);
}
